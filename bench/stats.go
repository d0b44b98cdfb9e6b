package bench

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// percentile returns the q-th quantile (0..1) of lat in seconds, by the
// nearest-rank method; 0 for no samples.
func percentile(lat []time.Duration, q float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return s[i].Seconds()
}

// diskUsage sums the sizes of the files under dir (du's apparent size).
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	return total, err
}

// memSample is the process's memory at one moment.
type memSample struct {
	heapLive uint64 // live heap after a GC
	rss      uint64 // VmRSS, 0 where /proc is missing
}

// sampleMemory collects garbage, returns freed memory to the OS and
// reads the live heap and the resident set size.
func sampleMemory() memSample {
	runtime.GC()
	debug.FreeOSMemory()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	var m memSample
	if s[0].Value.Kind() == metrics.KindUint64 {
		m.heapLive = s[0].Value.Uint64()
	}
	m.rss = vmRSS()
	return m
}

// vmRSS reads VmRSS from /proc/self/status, in bytes.
func vmRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) >= 1 {
				kb, err := strconv.ParseUint(fields[0], 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
}

// delta is after - before, 0 if negative.
func delta(after, before uint64) float64 {
	if after < before {
		return 0
	}
	return float64(after - before)
}

// processCPU is the user and system time the process has used so far
// (getrusage: microseconds, where /proc/self/stat counts clock ticks);
// 0 where it cannot be read.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fsyncLatency measures, in dir, how long an fsync takes after an 8 KiB
// append (about what one group commit adds to LevelDB's journal): p50
// and p99 in seconds over 200 appends.
func fsyncLatency(dir string) (p50, p99 float64, err error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 8<<10)
	lat := make([]time.Duration, 0, 200)
	for range 200 {
		if _, err := f.Write(buf); err != nil {
			return 0, 0, err
		}
		t0 := time.Now()
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(t0))
	}
	return percentile(lat, 0.5), percentile(lat, 0.99), nil
}
