package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Tandem builds for.
const clockTicks = 100

// ProcSample is one reading of a process's CPU time and memory from /proc.
type ProcSample struct {
	CPU    time.Duration // user + system
	RSS    int64         // resident set, bytes (VmRSS)
	RSSHWM int64         // peak resident set since the process started (VmHWM)
}

// ReadProc reads pid's CPU time from /proc/<pid>/stat and its memory from
// /proc/<pid>/status (Linux only).
func ReadProc(pid int) (ProcSample, error) {
	var s ProcSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read process %d: %w", pid, err)
	}
	s.CPU, err = parseStatCPU(stat)
	if err != nil {
		return s, fmt.Errorf("process %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read process %d: %w", pid, err)
	}
	s.RSS, s.RSSHWM, err = parseStatusRSS(status)
	if err != nil {
		return s, fmt.Errorf("process %d: %w", pid, err)
	}
	return s, nil
}

// parseStatCPU returns utime + stime from the contents of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces, so
// fields are counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name in %q", stat)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want 13 or more", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: cpu time %q: %w", s, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseStatusRSS returns VmRSS and VmHWM in bytes from the contents of
// /proc/<pid>/status.
func parseStatusRSS(status []byte) (rss, hwm int64, err error) {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("status: %s is %q, want a number of kB", key, val)
		}
		kb, perr := strconv.ParseInt(f[0], 10, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("status: %s: %w", key, perr)
		}
		if key == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
		found++
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("status: VmRSS or VmHWM missing (a kernel thread or a zombie?)")
	}
	return rss, hwm, nil
}

// readProcs reads and sums the samples of several processes (a server and
// the database processes it uses, say).
func readProcs(pids []int) (ProcSample, error) {
	var sum ProcSample
	for _, pid := range pids {
		s, err := ReadProc(pid)
		if err != nil {
			return sum, err
		}
		sum.CPU += s.CPU
		sum.RSS += s.RSS
		sum.RSSHWM += s.RSSHWM
	}
	return sum, nil
}

// selfCPU returns this process's user + system time (getrusage) and its
// peak resident set in bytes.
func selfCPU() (time.Duration, int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	tv := func(t syscall.Timeval) time.Duration {
		return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
	}
	return tv(ru.Utime) + tv(ru.Stime), ru.Maxrss << 10 // Maxrss is in kB on Linux
}
