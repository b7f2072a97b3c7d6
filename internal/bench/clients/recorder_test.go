package clients

import (
	"errors"
	"testing"

	"github.com/cableway/cableway/internal/bench/feeder"
)

// TestSeqChecked: a lost, repeated or reordered message fails the run.
func TestSeqChecked(t *testing.T) {
	for name, seqs := range map[string][]int64{
		"lost":      {feeder.FirstSeq, feeder.FirstSeq + 2},
		"repeated":  {feeder.FirstSeq, feeder.FirstSeq},
		"reordered": {feeder.FirstSeq + 1, feeder.FirstSeq},
	} {
		r := newRecorder(Config{N: 10})
		var err error
		for _, s := range seqs {
			if err = r.got(s, 0, true); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrSeq) {
			t.Errorf("%s: %v, want ErrSeq", name, err)
		}
	}
	r := newRecorder(Config{N: 10})
	for i := range int64(3) {
		if err := r.got(feeder.FirstSeq+i, 0, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.got(0, 0, false); err != nil {
		t.Fatal("a message not decoded (Raw) was checked:", err)
	}
}
