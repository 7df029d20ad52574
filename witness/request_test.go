package witness

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

const (
	hashA = "G79xkq/sCUKlMRqwJ3f2W8JbMV712fZ1bFsURz37EMg="
	hashB = "7rpF3SAmvY7AYUYQXo/E/MQEMKMtooTgHExmfLiaoEw="
	note3 = "bob\n3\naIW0CpGE+d/m/aOKs7B4KD22uZCV3s0zWvSU+VJ40fs=\n\n— bob nrqq\n"
)

func TestParseAddCheckpoint(t *testing.T) {
	for _, c := range []struct {
		body  string
		old   uint64
		proof int
	}{
		{"old 0\n\n" + note3, 0, 0},
		{"old 1\n" + hashA + "\n" + hashB + "\n\n" + note3, 1, 2},
		{"old 18446744073709551615\n\nx", 1<<64 - 1, 0},
		{"old 7\n" + strings.Repeat(hashA+"\n", maxProofHashes) + "\nx", 7, maxProofHashes},
	} {
		req, err := parseAddCheckpoint([]byte(c.body))
		if err != nil {
			t.Errorf("%q: %v", c.body, err)
			continue
		}
		if req.OldSize != c.old || len(req.Proof) != c.proof || !strings.HasSuffix(c.body, "\n\n"+string(req.Checkpoint)) {
			t.Errorf("%q: parsed %+v", c.body, req)
		}
	}
}

func TestParseAddCheckpointRefusesMalformed(t *testing.T) {
	for _, body := range []string{
		"",
		"old 0",                                // no newline
		"old 0\n",                              // no blank line
		"old 0\n\n",                            // no checkpoint
		"new 0\n\n" + note3,                    // wrong keyword
		"old  0\n\n" + note3,                   // two spaces
		"old\t0\n\n" + note3,                   // tab
		"Old 0\n\n" + note3,                    // case
		"old 00\n\n" + note3,                   // leading zero
		"old 01\n\n" + note3,                   // leading zero
		"old -1\n\n" + note3,                   // sign
		"old +1\n\n" + note3,                   // sign
		"old 1e3\n\n" + note3,                  // not decimal
		"old 0x10\n\n" + note3,                 // not decimal
		"old \n\n" + note3,                     // empty
		"old 1 \n\n" + note3,                   // trailing space
		"old 1\r\n\r\n" + note3,                // CRLF
		"old 18446744073709551616\n\n" + note3, // 2^64
		"old 99999999999999999999999\n\n" + note3,
		"old 1\n" + hashA[:43] + "\n\n" + note3,                                 // short hash
		"old 1\n" + hashA + "=\n\n" + note3,                                     // long hash
		"old 1\n" + strings.TrimRight(hashA, "=") + "\n\n" + note3,              // unpadded
		"old 1\n" + hashA[:42] + "F=\n\n" + note3,                               // non-canonical trailing bits
		"old 1\n" + strings.ReplaceAll(hashA, "/", "_") + "\n\n" + note3,        // URL alphabet
		"old 1\n" + hashA + " \n\n" + note3,                                     // trailing space
		"old 1\n " + hashA + "\n\n" + note3,                                     // leading space
		"old 1\n" + hashA + "\r\n\n" + note3,                                    // CR
		"old 1\n" + hashA + "\n" + hashB,                                        // no blank line
		"old 1\n" + strings.Repeat(hashA+"\n", maxProofHashes+1) + "\n" + note3, // 64 hashes
		"old 1\nAAAA\n\n" + note3,                                               // 3-byte hash
	} {
		if req, err := parseAddCheckpoint([]byte(body)); err == nil {
			t.Errorf("accepted %q as %+v", body, req)
		}
	}
}

func TestParseCheckpoint(t *testing.T) {
	cp, err := parseCheckpoint("bob\n3\naIW0CpGE+d/m/aOKs7B4KD22uZCV3s0zWvSU+VJ40fs=\n")
	if err != nil || cp.Origin != "bob" || cp.Size != 3 || cp.Root.String() != "aIW0CpGE+d/m/aOKs7B4KD22uZCV3s0zWvSU+VJ40fs=" {
		t.Fatalf("%+v %v", cp, err)
	}
	if cp, err := parseCheckpoint("example.com/log\n0\n" + hashA + "\nextension one\nextension two\n"); err != nil || cp.Size != 0 {
		t.Fatalf("with extension lines: %+v %v", cp, err)
	}
	for _, text := range []string{
		"",
		"bob\n3\n" + hashA,               // no final newline
		"bob\n3\n",                       // no hash
		"\n3\n" + hashA + "\n",           // empty origin
		"bob\n03\n" + hashA + "\n",       // leading zero
		"bob\n-3\n" + hashA + "\n",       // sign
		"bob\n3\n" + hashA[:40] + "\n",   // short hash
		"bob\n3\n" + hashA + "\n\next\n", // empty extension line
		"bob\n3\n" + hashA + "\n\n",      // empty extension line
		"bob\n 3\n" + hashA + "\n",       // space
		"bob\n3\n" + hashA + "x\n",       // long hash
	} {
		if cp, err := parseCheckpoint(text); err == nil {
			t.Errorf("accepted %q as %+v", text, cp)
		}
	}
}

// FuzzParseAddCheckpoint checks that the parser never panics and that what
// it accepts is exactly one encoding: re-encoding the parsed request gives
// back the body byte for byte.
func FuzzParseAddCheckpoint(f *testing.F) {
	f.Add([]byte("old 0\n\n" + note3))
	f.Add([]byte("old 1\n" + hashA + "\n" + hashB + "\n\n" + note3))
	f.Add([]byte("old 18446744073709551615\n\nx"))
	f.Add([]byte("old 1\n" + hashA + "\r\n\n" + note3))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseAddCheckpoint(body)
		if err != nil {
			return
		}
		if len(req.Proof) > maxProofHashes || len(req.Checkpoint) == 0 {
			t.Fatalf("accepted %q as %+v", body, req)
		}
		again := encodeAddCheckpoint(req)
		if !bytes.Equal(again, body) {
			t.Fatalf("%q parsed as %+v, which encodes as %q", body, req, again)
		}
	})
}

// FuzzParseCheckpoint: no panics, and an accepted checkpoint's first three
// lines re-encode to the text's first three lines.
func FuzzParseCheckpoint(f *testing.F) {
	f.Add("bob\n3\naIW0CpGE+d/m/aOKs7B4KD22uZCV3s0zWvSU+VJ40fs=\n")
	f.Add("example.com/log\n0\n" + hashA + "\nextension\n")
	f.Fuzz(func(t *testing.T, text string) {
		cp, err := parseCheckpoint(text)
		if err != nil {
			return
		}
		head := cp.Origin + "\n" + strconv.FormatUint(cp.Size, 10) + "\n" + cp.Root.String() + "\n"
		if !strings.HasPrefix(text, head) {
			t.Fatalf("%q parsed as %+v", text, cp)
		}
	})
}

func encodeAddCheckpoint(req addCheckpoint) []byte {
	var b bytes.Buffer
	b.WriteString("old " + strconv.FormatUint(req.OldSize, 10) + "\n")
	for _, h := range req.Proof {
		b.WriteString(h.String() + "\n")
	}
	b.WriteString("\n")
	b.Write(req.Checkpoint)
	return b.Bytes()
}
