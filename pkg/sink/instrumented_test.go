package sink

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/flusso/flusso/pkg/meter"
)

// scripted is a sink whose writes answer from a script.
type scripted struct {
	Sink
	answers []error
}

func (s *scripted) Name() string { return "primary" }

func (s *scripted) Write(context.Context, []Doc) ([]Rejection, error) {
	err := s.answers[0]
	s.answers = s.answers[1:]
	return []Rejection{{Reason: "bad"}}, err
}

func TestInstrumentedRecordsAcceptedWrites(t *testing.T) {
	m := Meters{Flushes: &meter.Counter{}, LastFlush: &meter.Gauge{}}
	var observed []time.Duration
	m.Observe = func(sink string, d time.Duration) {
		if sink != "primary" {
			t.Errorf("observed sink %q, want primary", sink)
		}
		observed = append(observed, d)
	}
	s := Instrumented(&scripted{answers: []error{nil, errors.New("refused"), nil}}, m)
	for range 3 {
		rejected, _ := s.Write(context.Background(), nil)
		if len(rejected) != 1 {
			t.Errorf("%d rejections passed on, want 1", len(rejected))
		}
	}
	if got, want := m.Flushes.Snapshot(), map[string]uint64{"primary": 2}; !maps.Equal(got, want) {
		t.Errorf("flushes %v, want %v (the refused write uncounted)", got, want)
	}
	if len(observed) != 2 {
		t.Errorf("%d durations observed, want 2", len(observed))
	}
	if last := m.LastFlush.Snapshot()["primary"]; last != int64(observed[len(observed)-1]) {
		t.Errorf("last flush %d, want the latest observed %d", last, observed[len(observed)-1])
	}
}
