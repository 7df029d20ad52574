# A 4 MB output that refers to the world's "a": large enough that its NAR
# streams in many chunks, so failures mid-stream can be tested.
{ world }:
let
  w = import world { };
  tools = builtins.path { name = "busybox-tools"; path = world + "/tools"; };
in derivation {
  name = "big";
  system = builtins.currentSystem;
  builder = "${tools}/sh";
  args = [ "-c" "${tools}/busybox mkdir $out; ${tools}/busybox cat ${tools}/busybox ${tools}/busybox > $out/blob; ${tools}/busybox echo ${w.a} > $out/uses-a" ];
}
