package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// pprofEnv names the environment variable that, when set to a listen
// address (127.0.0.1:6060), serves Go's profiler (/debug/pprof/) for the
// life of the process: for finding where an idle or busy node spends its
// CPU and memory. No flag: it is a debugging aid, not an operator
// setting, and it must not be reachable beyond the address given.
const pprofEnv = "STARLING_PPROF"

func startPprof(log *slog.Logger) {
	addr := os.Getenv(pprofEnv)
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("profiler not started", "env", pprofEnv, "err", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("profiler listening", "addr", ln.Addr().String(), "env", pprofEnv)
	go http.Serve(ln, mux) //nolint:errcheck // serves until the process exits
}
