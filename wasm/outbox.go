//go:build js && wasm

package wasm

import (
	"bytes"
	"strconv"
	"sync"
	"syscall/js"
	"unsafe"
)

// Record kinds, the first byte of each record in the outbox. Lower case
// for sockets, upper case for consumers, digits for subscriptions.
const (
	recOpen      = 'o' // socket open; payload: the protocol shown to JS
	recTransport = 'n' // socket: the transport it opened on (before 'o'); payload: its name
	recMove      = 'w' // socket moved between transports; payload: JSON {from, to, upgrade, reason}
	recFrame     = 'm' // socket message; payload: one JSON frame
	recClose     = 'x' // socket closed; payload: "code,clean,reason"
	recError     = 'e' // socket error; payload: message
	recResult    = 'p' // promise settled; payload: "" or the error message
	recConnect   = 'C' // consumer connected; payload: "1" after a reconnect (else "0"), then the transport's name
	recMoved     = 'W' // consumer moved between transports; payload: as 'w'
	recDrop      = 'D' // consumer disconnected; payload: "1" if it will reconnect, then the cause
	recStop      = 'S' // consumer stopped; payload: "" or the error message
	recRecv      = 'r' // subscription message; payload: JSON
	recSubOK     = 'c' // subscription confirmed; payload: "1" after a reconnect
	recSubDrop   = 'd' // subscription disconnected; payload: "1" if it will reconnect
	recReject    = 'j' // subscription rejected
)

// Separators: a record is kind, decimal id, fieldSep, payload; records are
// joined by recordSep. Neither byte can occur in JSON text (control
// characters must be escaped inside strings and are not whitespace), and
// text payloads are cleaned of them.
const (
	recordSep = '\x1e'
	fieldSep  = '\x1f'
)

// outbox collects records for JavaScript until it takes them. Its methods
// are safe for concurrent use.
type outbox struct {
	notify func() // tells JS to take(); called once per batch (see New)

	mu      sync.Mutex
	buf     []byte
	spare   []byte
	pending bool // notify was called and take has not run since
	// quiet is set while a JS call that takes the outbox itself before it
	// returns (wireDeliver) runs: no notify is needed then.
	quiet bool
}

// add appends a record whose payload is written by fill (nil for none).
// The first record since the last take calls notify (unless quiet), after
// the lock is released.
// When fill fails the record is dropped and its error returned.
func (o *outbox) add(kind byte, id int, fill func(dst []byte) ([]byte, error)) error {
	o.mu.Lock()
	mark := len(o.buf)
	if mark > 0 {
		o.buf = append(o.buf, recordSep)
	}
	o.buf = append(o.buf, kind)
	o.buf = strconv.AppendInt(o.buf, int64(id), 10)
	o.buf = append(o.buf, fieldSep)
	start := len(o.buf)
	if fill != nil {
		var err error
		if o.buf, err = fill(o.buf); err != nil || bytes.ContainsAny(o.buf[start:], "\x1e\x1f") {
			o.buf = o.buf[:mark]
			o.mu.Unlock()
			if err == nil {
				err = errControlChar
			}
			return err
		}
	}
	wake := !o.pending && !o.quiet
	o.pending = true
	o.mu.Unlock()
	if wake {
		o.notify()
	}
	return nil
}

// addText appends a record with a text payload, control characters
// replaced.
func (o *outbox) addText(kind byte, id int, text string) {
	text = clean(text)
	o.add(kind, id, func(dst []byte) ([]byte, error) { return append(dst, text...), nil })
}

// take hands JavaScript every record collected so far, as one string.
func (o *outbox) take() any {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending, o.quiet = false, false
	if len(o.buf) == 0 {
		return ""
	}
	// js.ValueOf copies the bytes into a JS string before it returns, so
	// the buffer can be reused without a Go string copy first.
	s := js.ValueOf(unsafe.String(unsafe.SliceData(o.buf), len(o.buf)))
	o.buf, o.spare = o.spare[:0], o.buf[:0]
	if cap(o.spare) > 1<<20 {
		o.spare = nil // do not keep a burst's buffer forever
	}
	return s
}

type constError string

func (e constError) Error() string { return string(e) }

const errControlChar = constError("cableway: frame holds a control character that JSON does not allow")
