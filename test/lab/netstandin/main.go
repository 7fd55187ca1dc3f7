// Command netstandin: the lab's stand-ins for what lies beyond a VPS's link, for the latency
// preflight (test/lab/README.md, "Latency").
//
//	netstandin listen ADDR:PORT...  accept TCP connections on each address and close them at once:
//	                                the GitLab host and the probe target the nodes time connects to
//	netstandin delay DEV MS         create the TUN device DEV and hand every packet routed into it
//	                                back to the kernel MS milliseconds later, in order: a link
//	                                delay where the kernel has no netem (CONFIG_NET_SCH_NETEM)
//
// Both print "ready" on stdout once listening (or once DEV exists) and run until killed. The
// lab runs them in its own namespaces only; the TUN device (and the routes into it) disappear
// with the process.
package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

const (
	iffTun    = 0x0001
	iffNoPi   = 0x1000
	tunSetIff = 0x400454ca
	// The most packets held at once; beyond it packets are dropped, as a full queue drops them.
	queueLen = 4096
)

func main() {
	if len(os.Args) < 3 {
		fail("usage: netstandin listen ADDR:PORT... | netstandin delay DEV MS")
	}
	switch os.Args[1] {
	case "listen":
		listen(os.Args[2:])
	case "delay":
		if len(os.Args) != 4 {
			fail("usage: netstandin delay DEV MS")
		}
		ms, err := strconv.Atoi(os.Args[3])
		if err != nil || ms < 1 || ms > 10000 {
			fail("delay: MS must be a whole number of milliseconds from 1 to 10000, got %q", os.Args[3])
		}
		delay(os.Args[2], time.Duration(ms)*time.Millisecond)
	default:
		fail("unknown command %q", os.Args[1])
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "netstandin: "+format+"\n", args...)
	os.Exit(2)
}

// listen accepts on every address and closes each connection at once.
func listen(addrs []string) {
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fail("listen %s: %v", addr, err)
		}
		go func(l net.Listener) {
			for {
				c, err := l.Accept()
				if err != nil {
					fail("accept on %s: %v", l.Addr(), err)
				}
				_ = c.Close()
			}
		}(l)
	}
	fmt.Println("ready")
	select {}
}

type packet struct {
	due  time.Time
	data []byte
}

// delay creates the TUN device and writes back each packet read from it once its delay is over.
func delay(dev string, d time.Duration) {
	if len(dev) == 0 || len(dev) > 15 {
		fail("delay: DEV must be an interface name of 1 to 15 characters, got %q", dev)
	}
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		fail("open /dev/net/tun: %v", err)
	}
	// struct ifreq: the name (16 bytes), then the flags (a short).
	var req [40]byte
	copy(req[:15], dev)
	binary.NativeEndian.PutUint16(req[16:], iffTun|iffNoPi)
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetIff, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
		fail("TUNSETIFF %s: %v", dev, errno)
	}
	tun := os.NewFile(uintptr(fd), "/dev/net/tun")
	queue := make(chan packet, queueLen)
	go func() {
		for p := range queue {
			time.Sleep(time.Until(p.due))
			if _, err := tun.Write(p.data); err != nil {
				fmt.Fprintf(os.Stderr, "netstandin: write to %s: %v\n", dev, err)
			}
		}
	}()
	fmt.Println("ready")
	buf := make([]byte, 65536)
	for {
		n, err := tun.Read(buf)
		if err != nil {
			fail("read from %s: %v", dev, err)
		}
		p := packet{due: time.Now().Add(d), data: append([]byte(nil), buf[:n]...)}
		select {
		case queue <- p:
		default: // the queue is full: the packet is lost
		}
	}
}
