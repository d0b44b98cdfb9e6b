package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/node"
)

const (
	flagGroup    = "group"
	flagMode     = "mode"
	flagKind     = "kind"
	flagInstance = "instance"
	flagGrace    = "grace"
	flagTTL      = "ttl"
)

// Timings of lead's link to the node. The node sends a line every
// leadKeepalive; without one for leadIdle (a hung node, a broken link)
// lead can no longer confirm leadership and stops the command: about the
// LAN failure timeout, so the old command stops about when the others
// elect a new leader.
const (
	leadKeepalive = 250 * time.Millisecond
	leadIdle      = 1500 * time.Millisecond
)

// waitBackoff is how lead and election watch wait for a node that is not
// up (yet, or any more): from waitMin, doubling up to waitMax, so a
// restarted node is found quickly and a node that stays down costs little.
const (
	waitMin = 250 * time.Millisecond
	waitMax = 5 * time.Second
)

// backoff is the next wait after d.
func backoff(d time.Duration) time.Duration {
	if d < waitMin {
		return waitMin
	}
	return min(2*d, waitMax)
}

// sleepCtx waits d or until ctx ends; false if ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// nodeDown reports whether err means the node is not up: not started
// yet, stopped, restarting, or not answering. Waiting can fix these;
// other errors (a wrong token, a bad request, a dir with no node) need
// the operator.
func nodeDown(err error, dir string) bool {
	var ae *api.APIError
	switch {
	case errors.Is(err, api.ErrUnreachable), errors.Is(err, api.ErrStreamIdle), errors.Is(err, api.ErrStreamClosed):
		return true
	case errors.Is(err, api.ErrNoNode):
		return dir != "" && node.Initialised(dir) // a node that is not running; not a typo
	case errors.As(err, &ae):
		return ae.StatusCode >= 500
	}
	return false
}

func (e *cmdEnv) leadCommand() *cli.Command {
	return &cli.Command{
		Name:      "lead",
		Category:  "election",
		Usage:     "run a command only while this node's candidate leads a group",
		ArgsUsage: "-- CMD [ARGS...]",
		UsageText: "starling lead --data DIR --group G [--mode LeaderOnly|AllWarm] [--grace 5s] [--ttl 3s] -- CMD ARGS...",
		Description: `Joins GROUP through the local node's API and runs CMD while this candidate is
the group's leader, so that across all nodes running the same "lead" exactly
one CMD runs once leadership is stable. Any existing program becomes
fault-tolerant with no code change.

When leadership is lost (another node took over, the node stops or cannot be
reached), CMD gets SIGTERM, then SIGKILL after --grace; it runs again if this
candidate leads again. CMD gets STARLING_GROUP, STARLING_CANDIDATE and
STARLING_LEADER_TERM (the term of the leadership it runs under: a stale
leader's work can be detected by its lower term) in its environment.

A node that is not up, when lead starts or later, is waited for: lead
retries with backoff (0.25s doubling to 5s) and says so on stderr; Ctrl-C
or SIGTERM ends the wait at once. Mistakes waiting cannot fix (a wrong
token, no node in DIR, the candidate already joined) end lead at once.

If CMD exits by itself, lead leaves the group (the next candidate takes over
at once) and exits with CMD's status. Ctrl-C or SIGTERM stops CMD the same
way, leaves the group and exits 0.

--mode AllWarm (for endpoints) runs CMD on every healthy, available
candidate, not only on the leader. If lead itself is killed, CMD is killed
with it (Linux) and the candidate leaves once --ttl passes without the
health reports lead sends.

Example:
   starling lead --data /var/lib/starling --group opcua-bridge -- /usr/bin/opcua-bridge --config /etc/bridge.yaml`,
		Flags: append(clientFlags(false),
			&cli.StringFlag{Name: flagGroup, Aliases: []string{"g"}, EnvVars: cmdEnvVar("lead", flagGroup), Usage: "the group to lead (`NAME`)"},
			&cli.StringFlag{Name: flagMode, EnvVars: cmdEnvVar("lead", flagMode), Value: "LeaderOnly", Usage: "`MODE`: LeaderOnly (CMD runs on the leader only) or AllWarm (on every eligible candidate; endpoints)"},
			&cli.StringFlag{Name: flagKind, EnvVars: cmdEnvVar("lead", flagKind), Usage: "`KIND` of the group: service or endpoint (default: endpoint with AllWarm, else service)"},
			&cli.StringFlag{Name: flagInstance, EnvVars: cmdEnvVar("lead", flagInstance), Usage: "`NAME` telling apart several candidates of this node in the group"},
			&cli.DurationFlag{Name: flagGrace, EnvVars: cmdEnvVar("lead", flagGrace), Value: 5 * time.Second, Usage: "how long CMD may take to stop after SIGTERM before SIGKILL"},
			&cli.DurationFlag{Name: flagTTL, EnvVars: cmdEnvVar("lead", flagTTL), Value: 3 * time.Second, Usage: "the candidate leaves if lead stops reporting health for this long (lead killed)"},
		),
		Action: e.lead,
	}
}

func (e *cmdEnv) lead(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) == 0 {
		return usageErrorf(c, "missing CMD: starling lead --group G -- CMD ARGS...")
	}
	group := strings.TrimSpace(c.String(flagGroup))
	if group == "" {
		return usageErrorf(c, "missing --group NAME")
	}
	if err := election.CheckGroupName(group); err != nil {
		return usageErrorf(c, "--group: %v", trimElection(err))
	}
	mode, err := election.ParseMode(c.String(flagMode))
	if err != nil {
		return usageErrorf(c, "--mode: %v", trimElection(err))
	}
	kindFlag := c.String(flagKind)
	if kindFlag == "" && mode == election.ModeAllWarm {
		kindFlag = "endpoint"
	}
	kind, err := election.ParseKind(kindFlag)
	if err != nil {
		return usageErrorf(c, "--kind: %v", trimElection(err))
	}
	if mode == election.ModeAllWarm && kind != election.KindEndpoint {
		return usageErrorf(c, "--mode AllWarm applies to endpoints: drop --kind service")
	}
	if err := election.CheckInstance(c.String(flagInstance)); err != nil {
		return usageErrorf(c, "--instance: %v", trimElection(err))
	}
	if c.Duration(flagGrace) < 0 {
		return usageErrorf(c, "--grace %s: must not be negative", c.Duration(flagGrace))
	}
	if c.Duration(flagTTL) < time.Second {
		return usageErrorf(c, "--ttl %s: use at least 1s (health is reported every ttl/3)", c.Duration(flagTTL))
	}
	// Before joining: a command that cannot run must not take leadership.
	path, err := exec.LookPath(args[0])
	if err != nil {
		return fmt.Errorf("cannot run %q: %w: check the name, or give a path", args[0], err)
	}
	if _, err := clientFrom(c); err != nil && !nodeDown(err, inherited(c, flagData)) {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	l := &leader{
		e: e, group: group, path: path, args: args, grace: c.Duration(flagGrace), mode: mode,
		req: api.JoinRequest{
			Instance: c.String(flagInstance), Kind: kind.String(), Mode: mode.String(),
			TTL: c.Duration(flagTTL).String(), Available: true,
		},
		ttl:       c.Duration(flagTTL),
		dir:       inherited(c, flagData),
		newClient: func() (*api.Client, error) { return clientFrom(c) },
	}
	return l.run(ctx)
}

func trimElection(err error) string {
	return strings.TrimPrefix(err.Error(), "election: invalid argument: ")
}

// leader is one `starling lead`.
type leader struct {
	e         *cmdEnv
	group     string
	path      string
	args      []string
	grace     time.Duration
	ttl       time.Duration
	mode      election.Mode
	req       api.JoinRequest
	dir       string // --data, to tell a node that is down from a typo
	newClient func() (*api.Client, error)
	child     *child
}

func (l *leader) logf(format string, args ...any) {
	fmt.Fprintf(l.e.stderr, "starling lead: "+format+"\n", args...)
}

// errChildExited ends lead with the command's status.
type errChildExited struct{ code int }

func (e errChildExited) Error() string { return fmt.Sprintf("command exited with status %d", e.code) }

// run keeps a session with the node until ctx ends or the command exits
// by itself. A node that is down, before the first join as after a lost
// session, is waited for the same way: retries with backoff (waitMin to
// waitMax), ended at once by Ctrl-C or SIGTERM. A mistake that waiting
// cannot fix (a wrong token, the candidate already joined, no node in
// DIR) is reported at once, unless a session already ran.
func (l *leader) run(ctx context.Context) error {
	var wait time.Duration
	everJoined := false
	for {
		joined, err := l.session(ctx)
		everJoined = everJoined || joined
		var exited errChildExited
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &exited):
			if exited.code == 0 {
				l.logf("%s exited; left group %s", l.args[0], l.group)
				return nil
			}
			return &exitError{err: fmt.Errorf("%s exited with status %d; left group %s", l.args[0], exited.code, l.group), code: exited.code}
		case !everJoined && !nodeDown(err, l.dir):
			return err
		}
		if joined {
			wait = 0 // a session ran: the node was up; start again quickly
		}
		wait = backoff(wait)
		l.logf("%v; waiting for the node, next try in %s", err, wait)
		if !sleepCtx(ctx, wait) {
			return nil
		}
	}
}

// session joins, follows the candidate's state, runs and stops the
// command. It returns when the link to the node is lost (the command is
// stopped first), when ctx ends, or when the command exits by itself
// (errChildExited; the candidate has left).
func (l *leader) session(ctx context.Context) (joined bool, err error) {
	cl, err := l.newClient()
	if err != nil {
		return false, err
	}
	defer cl.CloseIdleConnections()
	cand, err := cl.JoinGroup(ctx, l.group, l.req)
	if errors.Is(err, election.ErrCandidateExists) {
		return false, fmt.Errorf("%w: group %s already has this node's candidate%s (another `starling lead` for it may be running): give each one a different --instance",
			election.ErrCandidateExists, l.group, instanceSuffix(l.req.Instance))
	}
	if err != nil {
		return false, err
	}
	l.logf("joined group %s as %s", l.group, cand.ID)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		// Stop the command first, then leave: the next leader starts only
		// after ours has stopped.
		l.stopChild("leaving")
		lctx, lcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer lcancel()
		if lerr := cl.LeaveGroup(lctx, l.group, cand.ID); lerr == nil {
			l.logf("left group %s", l.group)
		}
	}()

	stream, err := cl.WatchCandidate(sctx, l.group, cand.ID, api.WatchOptions{Keepalive: leadKeepalive, IdleTimeout: leadIdle})
	if err != nil {
		return true, err
	}
	defer stream.Close()
	type next struct {
		ev  election.Event
		err error
	}
	events := make(chan next, 1)
	go func() {
		for {
			ev, err := stream.Next()
			select {
			case events <- next{ev, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	health := time.NewTicker(l.ttl / 3)
	defer health.Stop()

	for {
		var childDone <-chan struct{}
		if l.child != nil {
			childDone = l.child.done
		}
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-childDone:
			code := l.child.exitCode()
			l.child = nil
			return true, errChildExited{code}
		case <-health.C:
			hctx, hcancel := context.WithTimeout(sctx, leadIdle)
			_, err := cl.ReportHealth(hctx, l.group, cand.ID, true)
			hcancel()
			if err != nil {
				if ctx.Err() != nil {
					return true, ctx.Err()
				}
				l.stopChild("cannot report health to the node")
				return true, fmt.Errorf("report health: %w", err)
			}
		case n := <-events:
			if n.err != nil {
				if ctx.Err() != nil {
					return true, ctx.Err()
				}
				l.stopChild("lost the node")
				return true, fmt.Errorf("lost the node: %w", n.err)
			}
			if err := l.apply(n.ev); err != nil {
				return true, err
			}
		}
	}
}

// apply starts or stops the command for a new state.
func (l *leader) apply(ev election.Event) error {
	if !ev.Joined {
		l.stopChild("the candidate is no longer joined")
		return errors.New("the candidate left the group (its TTL expired?)")
	}
	should := ev.IsLeader
	if l.mode == election.ModeAllWarm {
		should = ev.Active
	}
	switch {
	case should && l.child == nil:
		ch, err := startChild(l.path, l.args, l.env(ev), l.e.stdout, l.e.stderr)
		if err != nil {
			return fmt.Errorf("start %s: %w", l.args[0], err)
		}
		l.child = ch
		l.child.term = ev.Term
		l.logf("leader of %s at term %d: started %s (pid %d)", l.group, ev.Term, l.args[0], ch.cmd.Process.Pid)
	case !should && l.child != nil:
		l.stopChild(fmt.Sprintf("no longer leader of %s (leader %s, term %d)", l.group, orNoneLeader(ev.Leader), ev.Term))
	case should && ev.IsLeader && ev.Term != l.child.term:
		// Same leader, higher term: only after a partition healed. The
		// command keeps running; its STARLING_LEADER_TERM is the old term.
		l.logf("still leader of %s; term is now %d (%s runs with term %d)", l.group, ev.Term, l.args[0], l.child.term)
		l.child.term = ev.Term
	}
	return nil
}

func instanceSuffix(instance string) string {
	if instance == "" {
		return ""
	}
	return " for instance " + instance
}

func orNoneLeader(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (l *leader) env(ev election.Event) []string {
	return append(os.Environ(),
		"STARLING_GROUP="+l.group,
		"STARLING_CANDIDATE="+ev.Candidate,
		fmt.Sprintf("STARLING_LEADER_TERM=%d", ev.Term),
	)
}

func (l *leader) stopChild(why string) {
	if l.child == nil {
		return
	}
	l.logf("%s: stopping %s (pid %d)", why, l.args[0], l.child.cmd.Process.Pid)
	if killed := l.child.stop(l.grace); killed {
		l.logf("%s did not stop within %s: killed", l.args[0], l.grace)
	}
	l.child = nil
}

// child is a running command, in its own process group so that the
// signals reach what it started too.
type child struct {
	cmd  *exec.Cmd
	term uint64
	done chan struct{}
	err  error
}

func startChild(path string, args, env []string, stdout, stderr io.Writer) (*child, error) {
	cmd := exec.Command(path, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		ch.err = cmd.Wait()
		close(ch.done)
	}()
	return ch, nil
}

// stop sends SIGTERM to the process group, SIGKILL after grace, and
// waits for the command to end. It reports whether SIGKILL was needed.
func (ch *child) stop(grace time.Duration) (killed bool) {
	ch.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-ch.done:
		return false
	case <-t.C:
	}
	ch.signal(syscall.SIGKILL)
	<-ch.done
	return true
}

func (ch *child) signal(sig syscall.Signal) {
	if err := syscall.Kill(-ch.cmd.Process.Pid, sig); err != nil {
		_ = ch.cmd.Process.Signal(sig)
	}
}

func (ch *child) exitCode() int {
	var ee *exec.ExitError
	if errors.As(ch.err, &ee) {
		if c := ee.ExitCode(); c > 0 {
			return c
		}
		return 1 // killed by a signal
	}
	if ch.err != nil {
		return 1
	}
	return 0
}
