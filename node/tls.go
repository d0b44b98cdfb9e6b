package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// Files of the self-signed API certificate in a data directory.
const (
	apiCertFile = "api-cert.pem"
	apiKeyFile  = "api-key.pem"
	// selfSignedFor is how long a self-signed API certificate is valid:
	// clients pin its fingerprint rather than trust its dates, and an
	// unattended node must not stop serving because a year went by.
	selfSignedFor = 20 * 365 * 24 * time.Hour
)

// apiLoopback reports whether the API address is reachable from this
// machine only.
func apiLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// apiTLS returns the API's TLS config and its certificate's SHA-256
// (hex), or nil when the API serves plain HTTP (Config.APITLS).
func apiTLS(dir string, cfg *Config) (*tls.Config, string, error) {
	switch cfg.APITLS {
	case APITLSOff:
		return nil, "", nil
	case "", APITLSAuto:
		if apiLoopback(cfg.APIAddr) && cfg.APICertFile == "" {
			return nil, "", nil
		}
	}
	var (
		cert tls.Certificate
		err  error
	)
	if cfg.APICertFile != "" {
		certPath, keyPath := inDir(dir, cfg.APICertFile), inDir(dir, cfg.APIKeyFile)
		if cert, err = tls.LoadX509KeyPair(certPath, keyPath); err != nil {
			return nil, "", fmt.Errorf("api_cert_file (--api-cert) %s, api_key_file (--api-key) %s: %w", certPath, keyPath, err)
		}
	} else if cert, err = selfSigned(dir, cfg.APIAddr); err != nil {
		return nil, "", fmt.Errorf("API certificate: %w", err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, hex.EncodeToString(sum[:]), nil
}

func inDir(dir, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// selfSigned loads the data directory's self-signed API certificate,
// making it first if there is none.
func selfSigned(dir, apiAddr string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, apiCertFile), filepath.Join(dir, apiKeyFile)
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return cert, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("%s: %w (remove %s and %s to make a new one; clients must then pin the new fingerprint)", certPath, err, certPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "starling " + host, Organization: []string{"Starling node (self-signed)"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(selfSignedFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	if h, _, err := net.SplitHostPort(apiAddr); err == nil {
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if ip == nil && h != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}
