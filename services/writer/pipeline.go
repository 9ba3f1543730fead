package writer

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

// concurrentWrites is how many runs of documents one writer has in flight.
// OpenSearch applies a bulk request to a shard on one thread, so with a
// single request outstanding it uses one core however many it has, and sits
// idle while the writer acks, fetches and encodes the next run. Versions
// keep concurrent runs from reordering builds of one document, and acks out
// of order are fine: what a stage confirms is its first unacked message.
const concurrentWrites = 2

// pipeline writes runs of documents concurrently and acks each run once the
// sink has it.
type pipeline struct {
	w       *Writer
	slots   chan struct{}
	refresh chan<- struct{}
	// caughtUp says nothing waited behind the latest fetch: the last write
	// in flight to finish then asks for a refresh.
	caughtUp atomic.Bool

	wg      sync.WaitGroup
	running atomic.Int64
	mu      sync.Mutex
	err     error // the first failure; later submits are refused
}

func newPipeline(w *Writer, refresh chan<- struct{}) *pipeline {
	return &pipeline{w: w, slots: make(chan struct{}, concurrentWrites), refresh: refresh}
}

// submit starts writing a run, waiting while concurrentWrites are in flight.
// The run's messages are acked when it is written and handed back for
// redelivery when it fails; a failure is reported by failed and drain.
func (p *pipeline) submit(ctx context.Context, run []*broker.DocumentMsg, docs []*flussopb.Document) error {
	stop := broker.KeepAlive(run)
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		stop()
		nakAll(run)
		return ctx.Err()
	}
	if err := p.failed(); err != nil {
		<-p.slots
		stop()
		nakAll(run)
		return err
	}
	p.wg.Add(1)
	p.running.Add(1)
	go func() {
		defer p.wg.Done()
		// The trace of the changes continues in the write.
		wctx, span := broker.StartBatch(ctx, "writer.write", run)
		err := p.w.write(wctx, docs)
		span.End()
		stop()
		<-p.slots
		if err != nil {
			nakAll(run)
			p.fail(err)
		} else {
			ackAll(run)
		}
		if p.running.Add(-1) == 0 && err == nil && p.caughtUp.Load() {
			select {
			case p.refresh <- struct{}{}:
			default: // one is already due
			}
		}
	}()
	return nil
}

// ready waits until a write can start at once. The writer waits for it
// before it fetches, not after: while both writes are in flight the
// documents pile up on the stream, and the next fetch takes all of them
// into one bulk request. Fetching first held a third, small run (a
// linger's worth) outside the writes until one ended, so under load
// OpenSearch got more, smaller requests, each with its translog sync.
func (p *pipeline) ready(ctx context.Context) error {
	select {
	case p.slots <- struct{}{}:
		// Only the writer's loop submits, so the slot stays free for it.
		<-p.slots
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pipeline) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// failed returns the first failure of a write, if any.
func (p *pipeline) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// drain waits for every write in flight and returns the first failure.
func (p *pipeline) drain() error {
	p.wg.Wait()
	return p.failed()
}
