package sink

import (
	"context"
	"time"

	"github.com/flusso/flusso/pkg/meter"
)

// Meters are what Instrumented records about a sink's writes, by sink name.
// Any may be nil.
type Meters struct {
	// Flushes counts the writes the sink accepted (a failed write is
	// retried and counted once, when it succeeds).
	Flushes *meter.Counter
	// LastFlush is the duration of the latest accepted write, in nanoseconds.
	LastFlush *meter.Gauge
	// Observe is handed each accepted write's duration (a histogram).
	Observe func(sink string, d time.Duration)
}

// Instrumented records every write of s into m, so the writer need not
// time its own flushes.
func Instrumented(s Sink, m Meters) Sink {
	return &instrumented{Sink: s, m: m}
}

type instrumented struct {
	Sink
	m Meters
}

func (i *instrumented) Write(ctx context.Context, docs []Doc) ([]Rejection, error) {
	start := time.Now()
	rejected, err := i.Sink.Write(ctx, docs)
	if err != nil {
		return rejected, err
	}
	took := time.Since(start)
	i.m.Flushes.Add(i.Name(), 1)
	i.m.LastFlush.Set(i.Name(), int64(took))
	if i.m.Observe != nil {
		i.m.Observe(i.Name(), took)
	}
	return rejected, nil
}
