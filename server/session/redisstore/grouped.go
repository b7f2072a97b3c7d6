package redisstore

import (
	"context"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// The appends and reads of every session of a store are grouped: one
// made while maxGroups groups are on their way to Redis waits for one to
// come back and goes with every one queued meanwhile, in one pipeline
// (one round trip for all of them, one write and one read for Redis).
// Each Append or Read still returns only once its own script ran: the
// contract is the same, the cost of many sessions busy at once is not.
// A call made while fewer groups are on their way is sent at once, on its
// own goroutine: one session alone pays nothing for it, and a read woken
// by an append's event does not wait for that append's answer.

// maxGroups is how many groups a store has on their way at most.
const maxGroups = 4

// scriptReq is one run of a script.
type scriptReq struct {
	script *redis.Script
	keys   []string
	args   []any
	res    []any
	err    error
	done   chan struct{}
}

// runGrouped runs script for keys with args, grouped with the scripts
// queued meanwhile. ctx only bounds the wait in the queue: a script sent
// to Redis is waited for (for at most 10 s), so that its answer says
// whether it ran (whether a frame was appended, say).
func (s *Store) runGrouped(ctx context.Context, script *redis.Script, keys []string, args ...any) ([]any, error) {
	r := &scriptReq{script: script, keys: keys, args: args, done: make(chan struct{})}
	s.amu.Lock()
	s.aq = append(s.aq, r)
	lead := s.agroups < maxGroups
	if lead {
		s.agroups++
	}
	s.amu.Unlock()
	if lead {
		// This goroutine sends the queue (its own call, maybe more);
		// calls queued while it was on its way go on a goroutine of
		// their own, so that this one's caller goes on.
		if !s.flushOnce() {
			go s.flush()
		}
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		s.amu.Lock()
		if i := slices.Index(s.aq, r); i >= 0 { // still queued: never sent
			s.aq = slices.Delete(s.aq, i, i+1)
			s.amu.Unlock()
			return nil, ctx.Err()
		}
		s.amu.Unlock()
		<-r.done
	}
	return r.res, r.err
}

// flush sends the queue until it is empty.
func (s *Store) flush() {
	for !s.flushOnce() {
	}
}

// flushOnce sends what is queued in one round trip; it reports whether
// the queue was empty after it (and this group is over).
func (s *Store) flushOnce() bool {
	s.amu.Lock()
	batch := s.aq
	s.aq = nil
	s.amu.Unlock()
	if len(batch) > 0 {
		s.send(batch)
	}
	s.amu.Lock()
	defer s.amu.Unlock()
	if len(s.aq) == 0 {
		s.agroups--
		return true
	}
	return false
}

func (s *Store) send(batch []*scriptReq) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	if len(batch) == 1 {
		r := batch[0]
		r.res, r.err = r.script.Run(ctx, s.rdb, r.keys, r.args...).Slice()
		return
	}
	cmds := make([]*redis.Cmd, len(batch))
	s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range batch {
			cmds[i] = r.script.EvalSha(ctx, p, r.keys, r.args...)
		}
		return nil
	})
	for i, r := range batch {
		r.res, r.err = cmds[i].Slice()
		if r.err != nil && redis.HasErrorPrefix(r.err, "NOSCRIPT") {
			// Not run (Redis lost its scripts: a restart): once more,
			// in order, loading the script.
			r.res, r.err = r.script.Run(ctx, s.rdb, r.keys, r.args...).Slice()
		}
	}
}
