// Device-side stand-in for the benchmarks: a minimal HTTP CONNECT proxy, as a device on the tailnet runs
// (no auth). Go, so that io.Copy between two TCP sockets uses splice(2) and the device costs little CPU on
// the core it shares with the gateway under test; half-close is propagated (CloseWrite) so a tunnel
// ends as soon as both sides are done, with no linger that would pile up descriptors under churn.
// Prints {"ready":true,"port":N} once listening.
//
// Usage: device [port [addresses]]. The socket is opened with SO_REUSEPORT, so a second process started with the
// first one's port shares the load: one process could not hold the descriptors of 10,000 tunnels
// under this machine's 20,000 open-file hard limit.
//
// addresses (comma-separated, default 127.0.0.1) makes one process many devices: it listens on the same port of
// each loopback address, as the pool benchmark's 100 devices. On SIGUSR1 it prints
// {"accepted":{"ADDRESS":N,...}}, the connections each address accepted so far, so the benchmark can show that
// every device was really dialled.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// SO_REUSEPORT on Linux (the syscall package does not name it).
const soReusePort = 0xf

var dialErrors atomic.Int64

// logDialError reports the first few failed dials and then every 1000th, so a failing benchmark says why
// without flooding the log.
func logDialError(err error) {
	if n := dialErrors.Add(1); n <= 5 || n%1000 == 0 {
		fmt.Fprintf(os.Stderr, "device: dial failed (%d so far): %v\n", n, err)
	}
}

func main() {
	port := "0"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	addresses := []string{"127.0.0.1"}
	if len(os.Args) > 2 {
		addresses = strings.Split(os.Args[2], ",")
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	listeners := make([]net.Listener, len(addresses))
	for i, a := range addresses {
		ln, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(a, port))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		listeners[i] = ln
		// Port 0: the first address chose one, and every other address takes the same.
		port = fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	}
	accepted := make([]atomic.Int64, len(addresses))
	// Before the ready line: a SIGUSR1 that came first would end the process.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go reportAccepted(sig, addresses, accepted)
	fmt.Printf("{\"ready\":true,\"port\":%s}\n", port)
	for i := 1; i < len(listeners); i++ {
		go acceptLoop(listeners[i], &accepted[i])
	}
	acceptLoop(listeners[0], &accepted[0])
}

func acceptLoop(ln net.Listener, accepted *atomic.Int64) {
	for {
		c, err := ln.Accept()
		if err != nil {
			// EMFILE and friends: back off instead of spinning.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		accepted.Add(1)
		go serve(c.(*net.TCPConn))
	}
}

// reportAccepted prints the per-address accept counts on every SIGUSR1, one JSON line.
func reportAccepted(sig <-chan os.Signal, addresses []string, accepted []atomic.Int64) {
	for range sig {
		var b strings.Builder
		b.WriteString(`{"accepted":{`)
		for i, a := range addresses {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:%d", a, accepted[i].Load())
		}
		b.WriteString("}}\n")
		os.Stdout.WriteString(b.String())
	}
}

func serve(c *net.TCPConn) {
	c.SetNoDelay(true)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 4096)
	req, err := http.ReadRequest(br)
	if err != nil {
		c.Close()
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", req.Host, 5*time.Second)
	if err != nil {
		logDialError(err)
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.Close()
		return
	}
	upc := up.(*net.TCPConn)
	upc.SetNoDelay(true)
	c.SetReadDeadline(time.Time{})
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		c.Close()
		upc.Close()
		return
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := upc.Write(b); err != nil {
			c.Close()
			upc.Close()
			return
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go pipe(upc, c, &wg)
	go pipe(c, upc, &wg)
	wg.Wait()
	c.Close()
	upc.Close()
}

// pipe copies until EOF and passes the EOF on as a half-close; on an error it closes both sides so the
// opposite direction stops too.
//
// io.Copy between two TCP sockets splices, and a splice in progress holds a kernel pipe (two more
// descriptors) even while it waits for data. 10,000 idle tunnels would then need 60,000 descriptors, so
// the copy gives its pipe back after a short idle spell and waits for readability holding nothing.
func pipe(dst, src *net.TCPConn, wg *sync.WaitGroup) {
	defer wg.Done()
	raw, err := src.SyscallConn()
	if err != nil {
		dst.Close()
		src.Close()
		return
	}
	for {
		src.SetReadDeadline(time.Now().Add(idleRelease))
		_, err := io.Copy(dst, src)
		if err == nil {
			dst.CloseWrite()
			return
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			if !errors.Is(err, net.ErrClosed) {
				dst.Close()
				src.Close()
			}
			return
		}
		src.SetReadDeadline(time.Time{})
		if err := raw.Read(readable); err != nil {
			dst.Close()
			src.Close()
			return
		}
	}
}

// After this long without data a copy releases its splice pipe.
const idleRelease = 200 * time.Millisecond

// readable reports whether the socket has data or EOF pending, without consuming it; returning false
// makes the runtime wait for readability. Peeking (rather than trusting an earlier wakeup) means data that
// arrived before the wait began is never missed.
func readable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}
