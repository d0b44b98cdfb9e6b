package node_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/node"
)

// Example embeds a Starling node in a program: open it on a data
// directory, write and read entities, and watch changes. Peers given in
// Settings.Peers (or found by mDNS) replicate everything.
func Example() {
	dir, _ := os.MkdirTemp("", "starling-example-")
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "node1")
	if _, err := node.Init(data, node.InitOptions{Settings: node.Settings{
		Env: "example", NodeID: "node1",
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, APIAddr: "127.0.0.1:0",
		NoMDNS: true, NoDHT: true,
	}}); err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	n, err := node.Open(ctx, data)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()
	tree := n.Entities()

	w := tree.Watch("/Factory", 16)
	defer w.Close()

	if _, err := tree.Create(ctx, "/", "Site", "Factory"); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := tree.Create(ctx, "/Factory", "Sensor", "Sensor7"); err != nil {
		fmt.Println(err)
		return
	}
	v, err := tree.Set(ctx, "/Factory/Sensor7", "temperature", entity.Float(21.5))
	if err != nil {
		fmt.Println(err)
		return
	}
	f, _ := tree.GetField("/Factory/Sensor7", "temperature")
	fmt.Println("temperature:", f.Value, "written by", f.Writer, "at the same version:", f.Version == v)

	for ev := range w.C() {
		if ev.Field == "temperature" {
			fmt.Println("watched:", ev.Path, ev.Field, "->", ev.New)
			break
		}
	}
	// Output:
	// temperature: 21.5 written by node1 at the same version: true
	// watched: /Factory/Sensor7 temperature -> 21.5
}
