package node_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/node"
)

// ExampleNode_Election runs a service only while this node leads its
// group: join the group as a candidate, watch the candidate, start the
// service when it becomes leader and stop it when it is not. With
// several nodes, each runs the same code and exactly one leads (the
// lowest node ID among the healthy, available candidates); when it
// stops or is cut off, another takes over within about a second.
func ExampleNode_Election() {
	dir, _ := os.MkdirTemp("", "starling-election-")
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "node1")
	if _, err := node.Init(data, node.InitOptions{Settings: node.Settings{
		Env: "example", NodeID: "node1",
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		NoMDNS:      true, NoDHT: true,
	}}); err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// An embedded node needs no HTTP API.
	n, err := node.Open(ctx, data, node.WithoutAPI())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()

	// Available: ready to lead at once (otherwise call SetAvailable(true)
	// once the service can start).
	cand, err := n.Election().Join(election.Spec{Group: "billing", Available: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	w := cand.Watch()
	defer w.Close()
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		if ev.IsLeader {
			// Start the service here; ev.Term tells this leadership apart
			// from earlier ones (fence writes with it).
			fmt.Printf("%s leads %s: service started\n", ev.Node, ev.Group)
			break
		}
	}
	// Leaving hands over at once (to the next candidate, if any).
	if err := cand.Leave(); err != nil {
		fmt.Println(err)
		return
	}
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		if !ev.IsLeader {
			// Stop the service here.
			fmt.Printf("left %s: service stopped (joined: %v)\n", ev.Group, ev.Joined)
			return
		}
	}
	// Output:
	// node1 leads billing: service started
	// left billing: service stopped (joined: false)
}
