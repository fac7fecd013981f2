package local

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procInfo is what the provider reads from /proc/<pid>/stat.
type procInfo struct {
	state byte   // field 3: R, S, D, Z (zombie), X (dead), ...
	pgrp  int    // field 5
	start uint64 // field 22: start time in clock ticks since boot
}

func (pi procInfo) dead() bool { return pi.state == 'Z' || pi.state == 'X' }

// haveProc reports whether /proc can be read; without it liveness falls
// back to kill(pid, 0) and pid reuse goes unnoticed.
var haveProc = func() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}()

func readProcStat(pid int) (procInfo, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, err
	}
	return parseStat(b)
}

// parseStat parses /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may hold spaces and parentheses, so fields are counted
// from the last ')'.
func parseStat(b []byte) (procInfo, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) == 0 {
		return procInfo{}, errors.New("malformed /proc stat")
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return procInfo{}, fmt.Errorf("malformed /proc stat: %w", err)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procInfo{}, fmt.Errorf("malformed /proc stat: %w", err)
	}
	return procInfo{state: f[0][0], pgrp: pgrp, start: start}, nil
}

// startTime returns the start time of pid, or 0 when unknown.
func startTime(pid int) uint64 {
	if !haveProc {
		return 0
	}
	pi, err := readProcStat(pid)
	if err != nil {
		return 0
	}
	return pi.start
}

// wrapperAlive reports whether the wrapper recorded as pid/start still
// runs: the pid exists, is not a zombie and started at start.
func wrapperAlive(pid int, start uint64) bool {
	if !haveProc {
		return signalZero(pid)
	}
	pi, err := readProcStat(pid)
	if err != nil || pi.dead() {
		return false
	}
	return start == 0 || pi.start == start
}

// procView answers "does this process group still have a live member?",
// from one scan of /proc (or from kill(-pgid, 0) without /proc).
type procView struct {
	groups map[int]bool // process groups with a member that is not a zombie
}

// scanProcs reads every process's group from /proc.
func scanProcs() procView {
	if !haveProc {
		return procView{}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return procView{}
	}
	v := procView{groups: map[int]bool{}}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pi, err := readProcStat(pid)
		if err != nil || pi.dead() {
			continue
		}
		v.groups[pi.pgrp] = true
	}
	return v
}

func (v procView) groupAlive(pgid int) bool {
	if v.groups == nil {
		return signalZero(-pgid)
	}
	return v.groups[pgid]
}

// jobAlive reports whether anything of the job recorded as pid/start still
// runs: the wrapper itself, or (once it has ended) processes left in its
// group. A pid now used by another process means the group is gone: the
// kernel does not reuse a pid while a process group of that number exists.
func jobAlive(pid int, start uint64, v procView) bool {
	if haveProc {
		pi, err := readProcStat(pid)
		if err == nil && start != 0 && pi.start != start {
			return false // reused
		}
		if err == nil && !pi.dead() {
			return true
		}
	}
	return v.groupAlive(pid)
}

func signalZero(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
