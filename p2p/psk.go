package p2p

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// The private network key file format of libp2p (and go-ipfs' swarm.key):
//
//	/key/swarm/psk/1.0.0/
//	/base16/
//	<64 hex characters>
//
// DecodeV1PSK in core/pnet reads it too, but it accepts trailing garbage
// and over-long keys, and its errors do not say what to fix; decodePSK is
// strict and explains.
const (
	pskHeader = "/key/swarm/psk/1.0.0/"
	pskBase16 = "/base16/"
	pskBase64 = "/base64/"
	pskBin    = "/bin/"
)

// GeneratePSK returns a new random 32-byte private network key.
func GeneratePSK() ([]byte, error) {
	psk := make([]byte, pskLen)
	if _, err := rand.Read(psk); err != nil {
		return nil, fmt.Errorf("p2p: generate private network key: %w", err)
	}
	return psk, nil
}

// WritePSK writes psk to path in libp2p's "/key/swarm/psk/1.0.0/" base16
// format (mode 0600); it refuses to overwrite an existing file.
func WritePSK(path string, psk []byte) error {
	if len(psk) != pskLen {
		return fmt.Errorf("p2p: write private network key %s: key is %d bytes, want %d", path, len(psk), pskLen)
	}
	if err := writeFileAtomic(path, encodePSK(psk), true); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("p2p: write private network key: %s already exists; remove it first if you mean to replace the key: %w", path, err)
		}
		return fmt.Errorf("p2p: write private network key: %w", err)
	}
	return nil
}

// LoadPSK reads a key file written by WritePSK (or go-ipfs' swarm.key).
// Errors wrap ErrBadPSK and say what is wrong with the file; when the
// file cannot be read they also wrap the file system error (test with
// errors.Is(err, fs.ErrNotExist)).
func LoadPSK(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPSK, err)
	}
	psk, err := decodePSK(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadPSK, path, err)
	}
	return psk, nil
}

func encodePSK(psk []byte) []byte {
	var b bytes.Buffer
	b.WriteString(pskHeader + "\n" + pskBase16 + "\n")
	b.WriteString(hex.EncodeToString(psk))
	b.WriteString("\n")
	return b.Bytes()
}

// decodePSK parses a key file's bytes. Its errors are plain descriptions;
// LoadPSK adds the path and ErrBadPSK.
func decodePSK(data []byte) ([]byte, error) {
	line, rest, _ := cutLine(data)
	if string(line) != pskHeader {
		return nil, fmt.Errorf("first line must be %s (is this a swarm key file?)", pskHeader)
	}
	enc, body, ok := cutLine(rest)
	if !ok || len(enc) == 0 {
		return nil, fmt.Errorf("second line must name the encoding (%s, %s or %s)", pskBase16, pskBase64, pskBin)
	}
	switch string(enc) {
	case pskBase16:
		body = bytes.TrimSpace(body)
		if len(body) != 2*pskLen {
			return nil, fmt.Errorf("expected %d hex characters after %s, got %d", 2*pskLen, pskBase16, len(body))
		}
		psk := make([]byte, pskLen)
		if _, err := hex.Decode(psk, body); err != nil {
			return nil, fmt.Errorf("expected %d hex characters after %s: %v", 2*pskLen, pskBase16, err)
		}
		return psk, nil
	case pskBase64:
		body = bytes.TrimSpace(body)
		psk := make([]byte, base64.StdEncoding.DecodedLen(len(body)))
		n, err := base64.StdEncoding.Decode(psk, body)
		if err != nil {
			return nil, fmt.Errorf("bad base64 after %s: %v", pskBase64, err)
		}
		if n != pskLen {
			return nil, fmt.Errorf("expected %d bytes after %s, got %d", pskLen, pskBase64, n)
		}
		return psk[:n], nil
	case pskBin:
		if len(body) == pskLen+1 && body[pskLen] == '\n' {
			body = body[:pskLen]
		}
		if len(body) != pskLen {
			return nil, fmt.Errorf("expected %d bytes after %s, got %d", pskLen, pskBin, len(body))
		}
		return bytes.Clone(body), nil
	default:
		return nil, fmt.Errorf("unknown encoding %q on the second line, want %s, %s or %s", enc, pskBase16, pskBase64, pskBin)
	}
}

// cutLine splits off the first line, accepting "\n" and "\r\n" endings.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	line, rest, ok = bytes.Cut(b, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), rest, ok
}
