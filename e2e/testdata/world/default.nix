# The "busybox world": a tiny set of derivations built with builtins only and
# Debian's busybox-static as the only tool, so tests need neither nixpkgs nor
# the network. tools/ is filled by the tests with a copy of /bin/busybox and
# an "sh" symlink to it (busybox picks its applet from argv[0]).
#
#   a -> b -> c        a chain with references
#   multi              a derivation with two outputs (out, dev; dev refers to out)
#   ca                 a content-addressed derivation (needs ca-derivations)
#   noise              deliberately non-reproducible (random bytes)
#   tamperme           an ordinary output a test may alter on disk before logging
{ salt ? "" }:
let
  tools = builtins.path { name = "busybox-tools"; path = ./tools; };
  bb = "${tools}/busybox";
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "${tools}/sh";
    args = [ "-c" script ];
    SALT = salt;
  };
in rec {
  a = mk "a" "${bb} mkdir -p $out/bin $out/empty; ${bb} echo 'hello from a' > $out/greeting; ${bb} printf '#!/bin/sh\\necho a\\n' > $out/bin/a; ${bb} chmod +x $out/bin/a; ${bb} ln -s greeting $out/link";
  b = mk "b" "${bb} mkdir $out; ${bb} echo ${a} > $out/uses-a";
  c = mk "c" "${bb} mkdir $out; ${bb} echo ${b} > $out/uses-b; ${bb} cat ${a}/greeting > $out/copied";
  multi = derivation {
    name = "multi";
    system = builtins.currentSystem;
    builder = "${tools}/sh";
    outputs = [ "out" "dev" ];
    args = [ "-c" "${bb} mkdir $out $dev; ${bb} echo lib > $out/lib; ${bb} echo $out > $dev/points-to-out" ];
  };
  ca = derivation {
    name = "ca";
    system = builtins.currentSystem;
    builder = "${tools}/sh";
    args = [ "-c" "${bb} mkdir $out; ${bb} echo content-addressed > $out/data" ];
    __contentAddressed = true;
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
  };
  noise = mk "noise" "${bb} mkdir $out; ${bb} head -c 32 /dev/urandom > $out/random";
  tamperme = mk "tamperme" "${bb} mkdir $out; ${bb} echo original > $out/file";
}
