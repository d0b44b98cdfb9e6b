package nfqueue

import (
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// packetMsg builds what the kernel sends for a queued packet.
func packetMsg(seq, id uint32) []byte {
	hdr := binary.BigEndian.AppendUint32(nil, id)
	hdr = append(hdr, 0x08, 0x00, 3) // hw_protocol IPv4, hook
	attrs := append(attr(9, []byte{1, 2, 3, 4, 5, 6}), attr(attrPacketHdr, hdr)...)
	return encode(msgPacket, 0, seq, 7, attrs)
}

func TestParsePacketMessages(t *testing.T) {
	b := append(packetMsg(1, 42), packetMsg(2, 43)...)
	var ids []uint32
	err := parseMessages(b, func(m message) {
		if m.typ != msgPacket {
			t.Errorf("type %#x", m.typ)
		}
		id, ok := packetID(m.payload)
		if !ok {
			t.Errorf("no packet ID in message %d", m.seq)
		}
		ids = append(ids, id)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != 42 || ids[1] != 43 {
		t.Errorf("ids = %v, want [42 43]", ids)
	}
}

func TestParseAck(t *testing.T) {
	// NLMSG_ERROR: netlink header, then the error code (-16, EBUSY) and
	// the header of the request it answers.
	b := make([]byte, nlmsgHdrLen+4+nlmsgHdrLen)
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], nlmsgError)
	binary.NativeEndian.PutUint32(b[8:12], 9)
	binary.NativeEndian.PutUint32(b[16:20], uint32(0xFFFFFFF0))
	var got int32
	var seq uint32
	if err := parseMessages(b, func(m message) { got, _ = ackCode(m.payload); seq = m.seq }); err != nil {
		t.Fatal(err)
	}
	if got != -16 || seq != 9 {
		t.Errorf("ack code %d seq %d, want -16 9", got, seq)
	}
}

func TestParseRejectsBadLengths(t *testing.T) {
	good := packetMsg(1, 1)
	bad := append([]byte(nil), good...)
	binary.NativeEndian.PutUint32(bad[0:4], uint32(len(good)+4))
	if err := parseMessages(bad, func(message) {}); err == nil {
		t.Error("a length beyond the buffer was accepted")
	}
	if err := parseMessages(good[:10], func(message) {}); err == nil {
		t.Error("a truncated header was accepted")
	}
}

func FuzzParseMessages(f *testing.F) {
	f.Add(packetMsg(1, 42))
	f.Add(append(packetMsg(1, 1), 0, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = parseMessages(b, func(m message) {
			_, _ = packetID(m.payload)
			_, _ = ackCode(m.payload)
		})
	})
}

// TestDelayerDelaysLoopbackUDP queues UDP packets on the loopback of a
// fresh network namespace (the test runs itself again under `unshare -r
// -n`, which needs no root) and checks that they arrive no sooner than
// the delay, and all of them.
func TestDelayerDelaysLoopbackUDP(t *testing.T) {
	const delay = 150 * time.Millisecond
	if os.Getenv("NFQUEUE_TEST_CHILD") == "" {
		for _, tool := range []string{"unshare", "ip", "iptables"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("needs %s (apt-get install util-linux iproute2 iptables): %v", tool, err)
			}
		}
		cmd := exec.Command("unshare", "-r", "-n", os.Args[0], "-test.run=^TestDelayerDelaysLoopbackUDP$", "-test.v")
		cmd.Env = append(os.Environ(), "NFQUEUE_TEST_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil && strings.Contains(string(out), "unshare:") {
			t.Skipf("no user and network namespaces here: %s", strings.TrimSpace(string(out)))
		}
		if err != nil || !strings.Contains(string(out), "--- PASS") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		t.Logf("child:\n%s", out)
		return
	}
	run := func(args ...string) {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "link", "set", "lo", "up")
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	d, err := Open(5, delay)
	if err != nil {
		t.Skipf("no NFQUEUE here: %v", err)
	}
	run("iptables", "-w", "-A", "OUTPUT", "-p", "udp", "--dport", strconv.Itoa(port), "-j", "NFQUEUE", "--queue-num", "5", "--queue-bypass")

	conn, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const n = 20
	sent := make(map[string]time.Time, n)
	for i := range n {
		msg := strconv.Itoa(i)
		sent[msg] = time.Now()
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64)
	for range n {
		if err := pc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("packet missing: %v", err)
		}
		if took := time.Since(sent[string(buf[:k])]); took < delay {
			t.Errorf("packet %s arrived after %s, want >= %s", buf[:k], took, delay)
		}
	}
	if got := d.Delayed(); got != n {
		t.Errorf("Delayed = %d, want %d", got, n)
	}
	run("iptables", "-w", "-F", "OUTPUT")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
