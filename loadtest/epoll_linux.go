package loadtest

import (
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// epollAvailable reports whether ClientEpoll can run here.
const epollAvailable = true

// deadlineScan is how often an event loop looks for requests past their
// timeout: timeouts are detected within this much of Config.Timeout.
const deadlineScan = 10 * time.Millisecond

// Epoll data of the loop's own descriptors; connections use their index
// plus firstConn.
const (
	tokenWake = iota
	tokenTimer
	firstConn
)

// readBufSize is each loop's read buffer, shared by its connections.
const readBufSize = 64 << 10

// loop is one event loop of ClientEpoll: non-blocking sockets and its own
// epoll instance, driven by one goroutine locked to its thread. A request
// costs one write and one read system call, plus a share of an epoll wait;
// no goroutine parks or wakes per request.
//
// Open loop is paced by the wait's own timeout: epoll_pwait2 (Linux 5.11)
// takes nanoseconds, and the thread's timer slack is set to 1 ns, so the
// loop wakes when the next arrival is due, and only when a connection is
// free to send it. On older kernels a periodic timerfd in the epoll set
// paces instead.
//
// With Config.BusyPoll the loop never sleeps: it polls without a timeout,
// so no wake-up of an idle CPU delays a send or the reading of a response.
type loop struct {
	r   *run
	req []byte
	sa  unix.Sockaddr

	epfd  int
	wake  int // eventfd: halt writes it to end epoll_wait
	timer int // timerfd, open loop; -1 otherwise

	conns  []*econn
	free   []*econn  // connections with no request in flight, most recent last
	queue  timeQueue // open loop: arrivals waiting for a free connection
	busy   int
	rbuf   []byte
	events []unix.EpollEvent

	// Open-loop schedule of this loop: arrival k is due at
	// start + offset + k*interval.
	interval float64
	offset   float64
	k        int64
	ended    bool // past the end: no new requests
	open     bool
	pwait2   bool // epoll_pwait2 paces; otherwise timer, a timerfd
}

// usePwait2 lets tests force the timerfd pacing of kernels without
// epoll_pwait2.
var usePwait2 = true

// econn is one connection of a loop.
type econn struct {
	token    int
	fd       int // -1 when not connected
	events   uint32
	dialing  bool
	inFlight bool
	wrote    int
	intended time.Time
	sent     time.Time
	deadline time.Time
	p        respParser
}

// newLoops builds ClientEpoll's event loops, one per usable CPU (at most
// one per connection), the connections and the open-loop rate shared out
// evenly.
func newLoops(r *run) ([]*loop, error) {
	t := r.t
	addr, err := net.ResolveTCPAddr("tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve %q: %w", t.addr, err)
	}
	// A Sockaddr carries its own encoding buffer: one per loop.
	sockaddr := func() unix.Sockaddr {
		if ip4 := addr.IP.To4(); ip4 != nil {
			s := &unix.SockaddrInet4{Port: addr.Port}
			copy(s.Addr[:], ip4)
			return s
		}
		s := &unix.SockaddrInet6{Port: addr.Port}
		copy(s.Addr[:], addr.IP.To16())
		return s
	}
	n := min(runtime.NumCPU(), runtime.GOMAXPROCS(0), t.Connections)
	req := buildRequest(t)
	loops := make([]*loop, 0, n)
	for i := range n {
		conns := t.Connections / n
		if i < t.Connections%n {
			conns++
		}
		l, err := newLoop(r, req, sockaddr(), conns)
		if err != nil {
			l.close()
			for _, l := range loops {
				l.close()
			}
			return nil, err
		}
		if t.open {
			l.interval = float64(time.Second) * float64(n) / t.Rate
			l.offset = l.interval * float64(i) / float64(n)
		}
		loops = append(loops, l)
	}
	return loops, nil
}

func newLoop(r *run, req []byte, sa unix.Sockaddr, conns int) (*loop, error) {
	l := &loop{r: r, req: req, sa: sa, epfd: -1, wake: -1, timer: -1,
		rbuf: make([]byte, readBufSize), events: make([]unix.EpollEvent, 256)}
	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return l, fmt.Errorf("cannot create epoll: %w", err)
	}
	if l.wake, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return l, fmt.Errorf("cannot create eventfd: %w", err)
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, l.wake, unix.EPOLLIN, tokenWake); err != nil {
		return l, err
	}
	l.open = r.t.open
	l.pwait2 = usePwait2 && l.probePwait2()
	if r.t.open && !r.t.BusyPoll && !l.pwait2 {
		if l.timer, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
			return l, fmt.Errorf("cannot create timerfd: %w", err)
		}
		if err := l.ctl(unix.EPOLL_CTL_ADD, l.timer, unix.EPOLLIN, tokenTimer); err != nil {
			return l, err
		}
	}
	for i := range conns {
		c := &econn{token: firstConn + i, fd: -1, p: respParser{head: r.t.Method == "HEAD"}}
		l.conns = append(l.conns, c)
		l.free = append(l.free, c)
	}
	return l, nil
}

func (l *loop) ctl(op, fd int, events uint32, token int) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(token)}
	if err := unix.EpollCtl(l.epfd, op, fd, &ev); err != nil {
		return fmt.Errorf("cannot register descriptor %d with epoll: %w", fd, err)
	}
	return nil
}

// probePwait2 reports whether the kernel has epoll_pwait2.
func (l *loop) probePwait2() bool {
	var ts unix.Timespec
	_, _, errno := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.events[0])),
		uintptr(len(l.events)), uintptr(unsafe.Pointer(&ts)), 0, 0)
	return errno == 0 || errno == unix.EINTR
}

// wait waits up to d for events and returns how many it stored in
// l.events.
func (l *loop) wait(d time.Duration) (int, error) {
	d = max(d, 0)
	if !l.pwait2 {
		ms := int((d + time.Millisecond - 1) / time.Millisecond)
		return unix.EpollWait(l.epfd, l.events, ms)
	}
	ts := unix.NsecToTimespec(int64(d))
	n, _, errno := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.events[0])),
		uintptr(len(l.events)), uintptr(unsafe.Pointer(&ts)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// nextDue is when the next open-loop arrival not yet queued is due.
func (l *loop) nextDue() time.Time {
	return l.r.start.Add(time.Duration(math.Round(l.offset + float64(l.k)*l.interval)))
}

// wakeUp ends the loop's epoll_wait; any goroutine may call it.
func (l *loop) wakeUp() {
	var one = [8]byte{1}
	_, _ = unix.Write(l.wake, one[:])
}

func (l *loop) close() {
	for _, c := range l.conns {
		l.disconnect(c)
	}
	for _, fd := range []int{l.timer, l.wake, l.epfd} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
}

func (l *loop) run() error {
	r := l.r
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if slack, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0); err == nil {
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
		defer func() { _ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(slack), 0, 0, 0) }()
	}
	if l.timer >= 0 {
		period := time.Duration(max(l.interval, float64(minPeriod)))
		ts := unix.NsecToTimespec(int64(period))
		first := unix.NsecToTimespec(max(int64(l.offset), 1))
		spec := unix.ItimerSpec{Value: first, Interval: ts}
		if err := unix.TimerfdSettime(l.timer, 0, &spec, nil); err != nil {
			return fmt.Errorf("cannot arm timerfd: %w", err)
		}
	}
	lastScan := time.Now()
	for {
		if r.stopped() {
			return nil
		}
		now := time.Now()
		if l.open {
			l.arrivals(now)
		}
		l.fill(now)
		if !l.ended && !now.Before(r.end) {
			l.ended = true
			if l.timer >= 0 {
				_ = l.ctl(unix.EPOLL_CTL_DEL, l.timer, 0, tokenTimer)
			}
			l.dropQueue()
		}
		if l.ended && l.busy == 0 {
			return nil
		}
		var timeout time.Duration // busy poll
		if !r.t.BusyPoll {
			timeout = deadlineScan
			if !l.ended {
				timeout = min(timeout, r.end.Sub(now))
				if l.open && l.pwait2 && len(l.free) > 0 {
					timeout = min(timeout, l.nextDue().Sub(now))
				}
			}
		}
		n, err := l.wait(timeout)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("cannot wait for events: %w", err)
		}
		now = time.Now()
		for _, ev := range l.events[:n] {
			switch tok := int(ev.Fd); tok {
			case tokenWake:
				var b [8]byte
				_, _ = unix.Read(l.wake, b[:])
			case tokenTimer:
				var b [8]byte
				_, _ = unix.Read(l.timer, b[:])
			default:
				l.event(l.conns[tok-firstConn], ev.Events, now)
			}
			if r.stopped() {
				return nil
			}
		}
		if now.Sub(lastScan) >= deadlineScan {
			lastScan = now
			l.expire(now)
		}
	}
}

// arrivals queues the open-loop arrivals due by now.
func (l *loop) arrivals(now time.Time) {
	r := l.r
	span := r.end.Sub(r.start)
	for ; ; l.k++ {
		offset := time.Duration(math.Round(l.offset + float64(l.k)*l.interval))
		if offset >= span {
			break
		}
		at := r.start.Add(offset)
		if at.After(now) {
			break
		}
		l.queue.push(at)
	}
}

// fill starts requests on free connections: queued arrivals in open loop,
// new ones in closed loop. It tries each free connection at most once, so a
// target that refuses connections is retried on the next turn of the loop,
// not in a tight loop here.
func (l *loop) fill(now time.Time) {
	for tries := len(l.free); tries > 0 && len(l.free) > 0 && !l.r.stopped(); tries-- {
		var intended time.Time
		if l.open {
			var ok bool
			if intended, ok = l.queue.pop(); !ok {
				return
			}
			if !now.Before(l.r.end) {
				if !intended.Before(l.r.from) {
					l.r.rec.addUnsent(1)
				}
				continue
			}
		} else {
			if !now.Before(l.r.end) {
				return
			}
			intended = now
		}
		c := l.free[len(l.free)-1]
		l.free = l.free[:len(l.free)-1]
		l.start(c, intended, now)
		now = time.Now()
	}
}

func (l *loop) dropQueue() {
	for {
		at, ok := l.queue.pop()
		if !ok {
			return
		}
		if !at.Before(l.r.from) {
			l.r.rec.addUnsent(1)
		}
	}
}

// timeQueue is a FIFO of times in a ring that doubles when full.
type timeQueue struct {
	ring       []time.Time
	head, size int
}

func (q *timeQueue) push(t time.Time) {
	if q.size == len(q.ring) {
		ring := make([]time.Time, max(2*len(q.ring), 64))
		for i := range q.size {
			ring[i] = q.ring[(q.head+i)%len(q.ring)]
		}
		q.ring, q.head = ring, 0
	}
	q.ring[(q.head+q.size)%len(q.ring)] = t
	q.size++
}

func (q *timeQueue) pop() (time.Time, bool) {
	if q.size == 0 {
		return time.Time{}, false
	}
	t := q.ring[q.head]
	q.head = (q.head + 1) % len(q.ring)
	q.size--
	return t, true
}

// start sends a request on c, connecting first if it has no connection.
func (l *loop) start(c *econn, intended, now time.Time) {
	c.inFlight, c.intended, c.sent, c.deadline = true, intended, now, now.Add(l.r.t.Timeout)
	c.wrote = 0
	c.p.reset()
	l.busy++
	if c.fd < 0 {
		if err := l.connect(c); err != nil {
			l.finish(c, 0, &reqError{kindConnect, err}, time.Now())
			return
		}
		if c.dialing {
			return
		}
	}
	l.write(c)
}

func (l *loop) connect(c *econn) error {
	domain := unix.AF_INET
	if _, ok := l.sa.(*unix.SockaddrInet6); ok {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return fmt.Errorf("cannot open socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	err = unix.Connect(fd, l.sa)
	switch {
	case err == nil:
		c.dialing = false
	case errors.Is(err, unix.EINPROGRESS):
		c.dialing = true
	default:
		_ = unix.Close(fd)
		return err
	}
	c.fd = fd
	c.events = unix.EPOLLIN | unix.EPOLLRDHUP
	if c.dialing {
		c.events |= unix.EPOLLOUT
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, fd, c.events, c.token); err != nil {
		_ = unix.Close(fd)
		c.fd = -1
		return err
	}
	return nil
}

func (l *loop) want(c *econn, events uint32) {
	if c.events != events {
		c.events = events
		_ = l.ctl(unix.EPOLL_CTL_MOD, c.fd, events, c.token)
	}
}

func (l *loop) write(c *econn) {
	for c.wrote < len(l.req) {
		n, err := unix.Write(c.fd, l.req[c.wrote:])
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				l.want(c, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLOUT)
				return
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			l.finish(c, 0, &reqError{kindIO, err}, time.Now())
			return
		}
		c.wrote += n
	}
	l.want(c, unix.EPOLLIN|unix.EPOLLRDHUP)
}

// event handles readiness of c's socket.
func (l *loop) event(c *econn, events uint32, now time.Time) {
	if c.fd < 0 {
		return
	}
	if !c.inFlight {
		// Nothing was asked: the server closed the idle connection, or sent
		// bytes out of turn. Either way the connection is done.
		l.disconnect(c)
		return
	}
	if c.dialing {
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		soerr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && soerr != 0 {
			err = unix.Errno(soerr)
		}
		if err != nil {
			l.finish(c, 0, &reqError{kindConnect, err}, now)
			return
		}
		c.dialing = false
		l.write(c)
		return
	}
	if c.wrote < len(l.req) && events&unix.EPOLLOUT != 0 {
		l.write(c)
		if !c.inFlight {
			return
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
		return
	}
	l.read(c, now)
}

func (l *loop) read(c *econn, now time.Time) {
	n, err := unix.Read(c.fd, l.rbuf)
	switch {
	case err != nil && errors.Is(err, unix.EAGAIN):
		return
	case err != nil:
		l.finish(c, 0, &reqError{kindIO, err}, now)
	case n == 0:
		if c.p.eof() {
			l.disconnect(c)
			l.finish(c, c.p.status, nil, now)
			return
		}
		l.finish(c, 0, &reqError{kindIO, errors.New("connection closed by the server")}, now)
	default:
		used, done, perr := c.p.feed(l.rbuf[:n])
		switch {
		case perr != nil:
			l.finish(c, 0, &reqError{kindIO, perr}, now)
		case done:
			if !c.p.keepAlive || used < n {
				l.disconnect(c) // closing, or sent more than one response
			}
			l.finish(c, c.p.status, nil, now)
		}
	}
}

// finish records c's request and frees c.
func (l *loop) finish(c *econn, status int, err error, now time.Time) {
	if err != nil {
		l.disconnect(c)
	}
	c.inFlight = false
	l.busy--
	l.free = append(l.free, c)
	l.r.note(c.intended, c.sent, now, status, err)
}

// expire fails the requests past their deadline.
func (l *loop) expire(now time.Time) {
	for _, c := range l.conns {
		if c.inFlight && now.After(c.deadline) {
			l.finish(c, 0, &reqError{kindTimeout, errors.New("no response before the timeout")}, now)
		}
	}
}

func (l *loop) disconnect(c *econn) {
	if c.fd >= 0 {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
		_ = unix.Close(c.fd)
		c.fd = -1
		c.dialing = false
	}
}
