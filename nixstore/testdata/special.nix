# Store paths with every node type and corner case of the NAR format, built
# with the busybox world's tools (the test copies this file next to a copy of
# the world). Each output is checked against Nix's own NAR and narHash.
#
#   tree        nested directories, empty directory and file, executables,
#               every padding length, bytewise name order, symlinks
#               (relative, into the store, dangling), a file larger than the
#               serialiser's buffer, a self-reference and one to world's a
#   file        a store path that is one regular file
#   executable  a store path that is one executable file
#   link        a store path that is a symlink (to a file in world's a)
let
  world = import ./world { };
  tools = builtins.path { name = "busybox-tools"; path = ./world/tools; };
  bb = "${tools}/busybox";
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "${tools}/sh";
    args = [ "-c" script ];
  };
in {
  tree = mk "tree" ''
    set -e
    ${bb} mkdir -p $out/empty-dir $out/bin $out/deep/1/2/3/4/5 $out/pad $out/sorting
    ${bb} touch $out/empty-file
    i=0
    while [ $i -le 17 ]; do
      ${bb} head -c $i /dev/zero | ${bb} tr '\0' x > $out/pad/len$i
      i=$((i+1))
    done
    for n in B a a-b a.b a_b ab Z '~' 'a b' "$(${bb} printf '\303\251')"; do
      ${bb} printf '%s' "$n" > "$out/sorting/$n"
    done
    ${bb} printf '#!/bin/sh\necho tool\n' > $out/bin/tool
    ${bb} chmod 0755 $out/bin/tool
    ${bb} echo leaf > $out/deep/1/2/3/leaf
    ${bb} yes 0123456789abcdef | ${bb} head -c 600001 > $out/big
    ${bb} echo $out > $out/self
    ${bb} echo ${world.a} > $out/uses-a
    ${bb} ln -s ../empty-file $out/bin/relative-link
    ${bb} ln -s ${world.a}/greeting $out/store-link
    ${bb} ln -s /nonexistent/dangling $out/dangling-link
    ${bb} ln -s deep $out/dir-link
  '';
  file = mk "file" "${bb} echo 'one file' > $out";
  executable = mk "executable" "${bb} printf '#!/bin/sh\\necho hi\\n' > $out; ${bb} chmod +x $out";
  link = mk "link" "${bb} ln -s ${world.a}/greeting $out";
}
