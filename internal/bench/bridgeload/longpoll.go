//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cableway/cableway/internal/bridgewire"
)

// pollWait is the wait each long-poll asks for (the bridge's default).
const pollWait = "25"

// attachPoll reads the session by long-polling (GET /sessions/{sid}/poll,
// one at a time, each acknowledging the last), subscribes to the bench
// channel and waits for the confirmation to come through a poll.
func (s *session) attachPoll(ctx context.Context) error {
	s.poll = true
	go s.pollLoop()
	if err := s.subscribe(ctx); err != nil {
		return err
	}
	select {
	case <-s.confirmed:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		why := s.dead
		s.mu.Unlock()
		return fmt.Errorf("no confirm_subscription through a poll (polling: %q): %w", why, ctx.Err())
	}
}

// subscribe is POST /sessions/{sid}/send with the bench channel's
// subscribe.
func (s *session) subscribe(ctx context.Context) error {
	sub := `[{"cseq":1,"frame":{"command":"subscribe","identifier":` + strconv.Quote(benchIdentifier) + `}}]`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.c.base+"/sessions/"+s.sid+"/send?token="+s.token, strings.NewReader(sub))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.c.https[s.src].Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST send (subscribe): HTTP %d %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

// pollLoop polls until the session is closed, reset or ended; a failed
// poll is retried with the same cursor after retryDelay, at most
// maxRetries times in a row.
func (s *session) pollLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	var next uint64
	for fails := 0; ; {
		p, err := s.pollOnce(ctx, next)
		if s.closing.Load() {
			return
		}
		if err == nil {
			fails = 0
			next = p.Next
			s.cursor.Store(next)
			s.epoch.Store(uint64(p.Epoch))
			for _, f := range p.Frames {
				if err = s.data(f); err != nil {
					break
				}
			}
			switch {
			case err != nil:
			case p.Reset:
				err = errors.New("reset " + p.Reason)
			case p.Ended:
				err = errors.New("session ended")
			default:
				continue
			}
			s.mu.Lock()
			if s.dead == "" {
				s.dead = err.Error()
			}
			s.mu.Unlock()
			return
		}
		if fails++; fails > maxRetries {
			s.mu.Lock()
			if s.dead == "" {
				s.dead = "polling: " + err.Error()
			}
			s.mu.Unlock()
			return
		}
		select {
		case <-s.quit:
			return
		case <-time.After(retryDelay):
		}
		s.mu.Lock()
		s.reconnects++
		s.mu.Unlock()
	}
}

// pollOnce is one GET /sessions/{sid}/poll after cursor next.
func (s *session) pollOnce(ctx context.Context, next uint64) (bridgewire.Polled, error) {
	var p bridgewire.Polled
	url := s.c.base + "/sessions/" + s.sid + "/poll?token=" + s.token + "&timeout=" + pollWait + "&after=" + strconv.FormatUint(next, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return p, err
	}
	resp, err := s.c.https[s.src].Do(req)
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return p, err
	}
	if resp.StatusCode != http.StatusOK {
		return p, fmt.Errorf("poll: HTTP %d %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return p, fmt.Errorf("poll: bad answer %q: %w", body, err)
	}
	return p, nil
}

// end is DELETE /sessions/{sid}: the bridge ends the session and its
// upstream connection.
func (s *session) end(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.c.base+"/sessions/"+s.sid, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Cableway-Token", s.token)
	resp, err := s.c.https[s.src].Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("DELETE session: HTTP %d", resp.StatusCode)
	}
	return nil
}
