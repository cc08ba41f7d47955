package report

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Machine says where the numbers were taken: they mean little without it.
type Machine struct {
	CPUModel   string `json:"cpu_model"`
	CPUs       int    `json:"cpus"` // usable by this process
	Kernel     string `json:"kernel,omitempty"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	Pinned     bool   `json:"pinned"`
	ServerCPUs string `json:"server_cpus,omitempty"` // taskset list, when pinned
	ClientCPUs string `json:"client_cpus,omitempty"`
	Pinning    string `json:"pinning"`      // how, or why not
	LoadAvg    string `json:"load_average"` // 1, 5 and 15 minutes, at the start
}

// probeMachine describes this machine and splits its CPUs between the
// servers under test and the load generator: the first half serves, the
// second half loads, each pinned with taskset. With one CPU, or without
// taskset, nothing is pinned and Pinning says why.
func probeMachine(pin bool) (Machine, string) {
	m := Machine{
		CPUModel: cpuModel(),
		CPUs:     runtime.NumCPU(),
		Go:       runtime.Version(),
		OS:       runtime.GOOS + "/" + runtime.GOARCH,
		LoadAvg:  loadAvg(),
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		m.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	cpus := usableCPUs()
	taskset, err := exec.LookPath("taskset")
	switch {
	case !pin:
		m.Pinning = "not pinned: disabled"
	case len(cpus) < 2:
		m.Pinning = fmt.Sprintf("not pinned: %d usable CPU", len(cpus))
	case err != nil:
		m.Pinning = "not pinned: taskset not found (util-linux)"
	default:
		half := len(cpus) / 2
		m.Pinned = true
		m.ServerCPUs, m.ClientCPUs = cpuList(cpus[:half]), cpuList(cpus[half:])
		m.Pinning = fmt.Sprintf("taskset: servers on CPU %s, load generator on CPU %s", m.ServerCPUs, m.ClientCPUs)
		return m, taskset
	}
	return m, ""
}

func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/PID/stat: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// busyCPU returns the CPU time all CPUs spent busy (anything but idle and
// iowait) since boot.
func busyCPU() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, false
	}
	var busy int64
	for i, s := range f[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, false
		}
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks, true
}

// processCPU returns the user and system CPU time of process pid.
func processCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: fields start after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, true
}
