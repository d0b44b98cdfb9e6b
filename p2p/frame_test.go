package p2p

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 127, 128, 1 << 20} {
		data := bytes.Repeat([]byte{0x5a}, size)
		var buf bytes.Buffer
		if err := writeFrame(&buf, data); err != nil {
			t.Fatal(err)
		}
		got, err := readFrame(bufio.NewReader(&buf), maxMessageSize)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("size %d: body differs", size)
		}
	}
}

func TestReadFrameRejects(t *testing.T) {
	var big bytes.Buffer
	_ = writeFrame(&big, make([]byte, 100))
	if _, err := readFrame(bytes.NewReader(big.Bytes()), 99); !errors.Is(err, errFrameTooLarge) {
		t.Errorf("over-limit frame: %v", err)
	}
	if _, err := readFrame(bytes.NewReader(big.Bytes()[:50]), 1000); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated frame: %v", err)
	}
	// A length that claims 2^63 bytes must be refused before allocating.
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	if _, err := readFrame(bytes.NewReader(huge), maxMessageSize); !errors.Is(err, errFrameTooLarge) {
		t.Errorf("huge length: %v", err)
	}
	if _, err := readFrame(bytes.NewReader(nil), maxMessageSize); err == nil {
		t.Error("empty input accepted")
	}
}

func FuzzReadFrame(f *testing.F) {
	var seed bytes.Buffer
	_ = writeFrame(&seed, []byte("heads"))
	f.Add(seed.Bytes())
	f.Add([]byte{0x80})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 1 << 16
		data, err := readFrame(bytes.NewReader(in), limit)
		if err != nil {
			return
		}
		if len(data) > limit {
			t.Fatalf("returned %d bytes over the %d limit", len(data), limit)
		}
		var out bytes.Buffer
		_ = writeFrame(&out, data)
		if !bytes.HasPrefix(in, out.Bytes()) {
			// Varints have one canonical form only when minimal; accept
			// non-minimal encodings but require the same body.
			again, err := readFrame(bytes.NewReader(out.Bytes()), limit)
			if err != nil || !bytes.Equal(again, data) {
				t.Fatalf("re-encoding changed the body: %v", err)
			}
		}
	})
}
