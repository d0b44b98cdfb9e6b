// Package nfqueue delays packets: it binds an NFQUEUE queue over
// netlink and accepts each queued packet a fixed time after it arrived.
// The chaos suite's delay fault uses it because this kernel has no
// netem (tc's delay qdisc); an iptables rule with `-j NFQUEUE` chooses
// which packets come here.
//
// It speaks nfnetlink_queue directly over a netlink socket (standard
// library only) and asks for packet metadata only (NFQNL_COPY_META): the
// payload never crosses into user space. A constant delay keeps packets
// in their order. When the queue is full the kernel lets packets pass
// (NFQA_CFG_F_FAIL_OPEN), so an overloaded delayer degrades to less
// delay, not to loss.
package nfqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Netlink and nfnetlink_queue constants (linux/netfilter/nfnetlink.h,
// nfnetlink_queue.h).
const (
	nfnlSubsysQueue = 3
	msgPacket       = nfnlSubsysQueue << 8   // NFQNL_MSG_PACKET (0)
	msgVerdict      = nfnlSubsysQueue<<8 | 1 // NFQNL_MSG_VERDICT
	msgConfig       = nfnlSubsysQueue<<8 | 2 // NFQNL_MSG_CONFIG

	attrPacketHdr  = 1 // NFQA_PACKET_HDR
	attrVerdictHdr = 2 // NFQA_VERDICT_HDR

	cfgCmd    = 1 // NFQA_CFG_CMD
	cfgParams = 2 // NFQA_CFG_PARAMS
	cfgMaxLen = 3 // NFQA_CFG_QUEUE_MAXLEN
	cfgMask   = 4 // NFQA_CFG_MASK
	cfgFlags  = 5 // NFQA_CFG_FLAGS

	cmdBind   = 1 // NFQNL_CFG_CMD_BIND
	cmdUnbind = 2 // NFQNL_CFG_CMD_UNBIND

	copyMeta     = 1 // NFQNL_COPY_META
	flagFailOpen = 1 // NFQA_CFG_F_FAIL_OPEN

	nfAccept = 1 // NF_ACCEPT

	nlmsgError  = 2 // NLMSG_ERROR
	nlmsgHdrLen = 16
	nfgenLen    = 4
	attrTypeMsk = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER

	// queueMaxLen is how many packets the kernel holds for us at most.
	// At the suite's packet rates (a few thousand per second) and delays
	// (under a second) it is never reached.
	queueMaxLen = 8192
	// recvTimeout bounds a blocking read, so Close is noticed.
	recvTimeout = 100 * time.Millisecond
)

// Delayer holds every packet of one queue for a fixed delay.
type Delayer struct {
	fd      int
	queue   uint16
	delay   time.Duration
	seq     atomic.Uint32
	sendMu  sync.Mutex
	pending chan held
	stop    chan struct{}
	readers sync.WaitGroup
	release sync.WaitGroup

	delayed  atomic.Uint64
	passed   atomic.Uint64 // accepted at once: the hold buffer was full
	failures atomic.Uint64 // verdicts the kernel refused

	closeOnce sync.Once
	closeErr  error
}

type held struct {
	id uint32
	at time.Time
}

// Open binds queue and starts delaying the packets that arrive on it.
// It fails when the kernel has no NFQUEUE support or the queue is bound
// by another program.
func Open(queue uint16, delay time.Duration) (*Delayer, error) {
	if delay <= 0 {
		return nil, fmt.Errorf("nfqueue: delay %s must be positive", delay)
	}
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nfqueue: netlink socket: %w", err)
	}
	d := &Delayer{
		fd: fd, queue: queue, delay: delay,
		pending: make(chan held, queueMaxLen),
		stop:    make(chan struct{}),
	}
	ok := false
	defer func() {
		if !ok {
			_ = syscall.Close(fd)
		}
	}()
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("nfqueue: bind netlink socket: %w", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
	tv := syscall.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("nfqueue: receive timeout: %w", err)
	}

	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params, 0) // copy range: metadata only
	params[4] = copyMeta
	flags := binary.BigEndian.AppendUint32(nil, flagFailOpen)
	for _, step := range []struct {
		what  string
		attrs []byte
	}{
		{"bind queue", attr(cfgCmd, []byte{cmdBind, 0, 0, syscall.AF_INET})},
		{"copy mode", attr(cfgParams, params)},
		{"queue length", attr(cfgMaxLen, binary.BigEndian.AppendUint32(nil, queueMaxLen))},
		{"fail-open", append(attr(cfgMask, flags), attr(cfgFlags, flags)...)},
	} {
		if err := d.request(msgConfig, step.attrs); err != nil {
			return nil, fmt.Errorf("nfqueue: queue %d: %s: %w", queue, step.what, err)
		}
	}
	ok = true
	d.readers.Add(1)
	go d.readLoop()
	d.release.Add(1)
	go d.releaseLoop()
	return d, nil
}

// Delayed is the number of packets held so far.
func (d *Delayer) Delayed() uint64 { return d.delayed.Load() }

// Passed is the number of packets let through undelayed because the
// hold buffer was full.
func (d *Delayer) Passed() uint64 { return d.passed.Load() }

// Close stops taking packets, releases the held ones on schedule, and
// unbinds the queue. Remove the rules that feed the queue first: packets
// that arrive after Close pass undelayed only with --queue-bypass.
// Safe to call twice.
func (d *Delayer) Close() error {
	d.closeOnce.Do(func() {
		close(d.stop)
		d.readers.Wait()
		close(d.pending)
		d.release.Wait()
		if err := d.request(msgConfig, attr(cfgCmd, []byte{cmdUnbind, 0, 0, syscall.AF_INET})); err != nil {
			d.closeErr = fmt.Errorf("nfqueue: unbind queue %d: %w", d.queue, err)
		}
		if err := syscall.Close(d.fd); err != nil && d.closeErr == nil {
			d.closeErr = err
		}
		if n := d.failures.Load(); n > 0 && d.closeErr == nil {
			d.closeErr = fmt.Errorf("nfqueue: queue %d: the kernel refused %d verdicts", d.queue, n)
		}
	})
	return d.closeErr
}

func (d *Delayer) readLoop() {
	defer d.readers.Done()
	buf := make([]byte, 1<<16)
	for {
		select {
		case <-d.stop:
			return
		default:
		}
		n, _, err := syscall.Recvfrom(d.fd, buf, 0)
		if err != nil {
			// EAGAIN: the receive timeout; ENOBUFS: the socket buffer
			// overflowed and the kernel applied fail-open. Both go on.
			continue
		}
		now := time.Now()
		_ = parseMessages(buf[:n], func(m message) {
			if m.typ != msgPacket {
				return
			}
			id, ok := packetID(m.payload)
			if !ok {
				return
			}
			select {
			case d.pending <- held{id: id, at: now.Add(d.delay)}:
				d.delayed.Add(1)
			default:
				d.passed.Add(1)
				d.verdict(id)
			}
		})
	}
}

// releaseLoop accepts the held packets in arrival order, each once its
// delay is over.
func (d *Delayer) releaseLoop() {
	defer d.release.Done()
	for h := range d.pending {
		if w := time.Until(h.at); w > 0 {
			time.Sleep(w)
		}
		d.verdict(h.id)
	}
}

func (d *Delayer) verdict(id uint32) {
	v := make([]byte, 8)
	binary.BigEndian.PutUint32(v[0:4], nfAccept)
	binary.BigEndian.PutUint32(v[4:8], id)
	if err := d.send(msgVerdict, 0, attr(attrVerdictHdr, v)); err != nil {
		d.failures.Add(1)
	}
}

func (d *Delayer) send(typ, flags uint16, attrs []byte) error {
	seq := d.seq.Add(1)
	msg := encode(typ, syscall.NLM_F_REQUEST|flags, seq, d.queue, attrs)
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	return syscall.Sendto(d.fd, msg, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK})
}

// request sends a config message and waits for its acknowledgement. It
// runs only while no reader runs (Open, and Close after the reader
// stopped); a packet that arrives meanwhile is accepted at once.
func (d *Delayer) request(typ uint16, attrs []byte) error {
	seq := d.seq.Load() + 1
	if err := d.send(typ, syscall.NLM_F_ACK, attrs); err != nil {
		return err
	}
	buf := make([]byte, 1<<16)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := syscall.Recvfrom(d.fd, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ENOBUFS) {
				continue
			}
			return err
		}
		var result error
		done := false
		perr := parseMessages(buf[:n], func(m message) {
			switch {
			case m.typ == nlmsgError && m.seq == seq:
				done = true
				if code, ok := ackCode(m.payload); !ok {
					result = errors.New("short netlink acknowledgement")
				} else if code != 0 {
					result = syscall.Errno(-code)
				}
			case m.typ == msgPacket:
				if id, ok := packetID(m.payload); ok {
					d.verdict(id)
				}
			}
		})
		if perr != nil {
			return perr
		}
		if done {
			return result
		}
	}
	return errors.New("no acknowledgement from the kernel within 2s")
}

// encode builds one netlink message: header, nfgenmsg, attributes.
func encode(typ, flags uint16, seq uint32, queue uint16, attrs []byte) []byte {
	n := nlmsgHdrLen + nfgenLen + len(attrs)
	b := make([]byte, nlmsgHdrLen, n)
	binary.NativeEndian.PutUint32(b[0:4], uint32(n))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	binary.NativeEndian.PutUint16(b[6:8], flags)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	// b[12:16]: port ID 0, the kernel.
	b = append(b, syscall.AF_UNSPEC, 0) // nfgen_family, version NFNETLINK_V0
	b = binary.BigEndian.AppendUint16(b, queue)
	return append(b, attrs...)
}

// attr encodes one netlink attribute, padded to 4 bytes.
func attr(typ uint16, data []byte) []byte {
	l := 4 + len(data)
	b := make([]byte, 4, align(l))
	binary.NativeEndian.PutUint16(b[0:2], uint16(l))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, data...)
	for len(b) < align(l) {
		b = append(b, 0)
	}
	return b
}

func align(n int) int { return (n + 3) &^ 3 }

// message is one netlink message of a datagram.
type message struct {
	typ     uint16
	seq     uint32
	payload []byte // after the netlink header
}

// errMalformed reports a datagram that does not parse.
var errMalformed = errors.New("nfqueue: malformed netlink message")

// parseMessages calls fn for each message in b, and stops with
// errMalformed at the first length that does not fit.
func parseMessages(b []byte, fn func(message)) error {
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < nlmsgHdrLen || l > len(b) {
			return errMalformed
		}
		fn(message{
			typ:     binary.NativeEndian.Uint16(b[4:6]),
			seq:     binary.NativeEndian.Uint32(b[8:12]),
			payload: b[nlmsgHdrLen:l],
		})
		if a := align(l); a < len(b) {
			b = b[a:]
		} else {
			b = nil
		}
	}
	if len(b) != 0 {
		return errMalformed
	}
	return nil
}

// packetID finds NFQA_PACKET_HDR in a packet message's payload (nfgenmsg
// then attributes) and returns the packet ID.
func packetID(p []byte) (uint32, bool) {
	if len(p) < nfgenLen {
		return 0, false
	}
	p = p[nfgenLen:]
	for len(p) >= 4 {
		l := int(binary.NativeEndian.Uint16(p[0:2]))
		typ := binary.NativeEndian.Uint16(p[2:4]) & attrTypeMsk
		if l < 4 || l > len(p) {
			return 0, false
		}
		if typ == attrPacketHdr && l >= 4+4 {
			return binary.BigEndian.Uint32(p[4:8]), true
		}
		if a := align(l); a < len(p) {
			p = p[a:]
		} else {
			p = nil
		}
	}
	return 0, false
}

// ackCode returns the error code of an NLMSG_ERROR payload (0 for an
// acknowledgement, minus an errno otherwise).
func ackCode(p []byte) (int32, bool) {
	if len(p) < 4 {
		return 0, false
	}
	return int32(binary.NativeEndian.Uint32(p[0:4])), true
}
