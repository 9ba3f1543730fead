package main

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/pkg/broker"
)

// backlogPoint is the work waiting at each stage at one moment: changes
// the assemblers have not finished (pending + unacked) and documents the
// writer has not written. Where it piles up is the stage that limits.
type backlogPoint struct {
	T         float64 `json:"t"`
	Assembler uint64  `json:"assembler"`
	Writer    uint64  `json:"writer"`
	// ChangesStream and DocsStream are what the two streams held: the
	// broker's share of memory and disk.
	ChangesStream streamState `json:"changes_stream"`
	DocsStream    streamState `json:"docs_stream"`
}

// streamState is a stream's state as JetStream reports it: messages and
// bytes stored now, and the sequence of the last message ever stored.
type streamState struct {
	Msgs    uint64 `json:"msgs"`
	Bytes   uint64 `json:"bytes"`
	LastSeq uint64 `json:"last_seq"`
}

// sampleBacklog reads the stage consumers of an external NATS once a
// second until ctx ends. Only the distributed runs have a NATS the harness
// can reach; the embedded one lives inside the flusso process.
func sampleBacklog(ctx context.Context, natsURL string, start time.Time) <-chan []backlogPoint {
	out := make(chan []backlogPoint, 1)
	go func() {
		var pts []backlogPoint
		defer func() { out <- pts }()
		nc, err := nats.Connect(natsURL, nats.Name("flusso-bench"))
		if err != nil {
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		pending := func(stream, consumer string) uint64 {
			c, err := js.Consumer(ctx, stream, consumer)
			if err != nil {
				return 0
			}
			info, err := c.Info(ctx)
			if err != nil {
				return 0
			}
			return info.NumPending + uint64(info.NumAckPending)
		}
		state := func(name string) streamState {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return streamState{}
			}
			info, err := s.Info(ctx)
			if err != nil {
				return streamState{}
			}
			return streamState{Msgs: info.State.Msgs, Bytes: info.State.Bytes, LastSeq: info.State.LastSeq}
		}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pts = append(pts, backlogPoint{
				T:             time.Since(start).Seconds(),
				Assembler:     pending(broker.ChangesStream, broker.AssemblerConsumer),
				Writer:        pending(broker.DocsStream, broker.WriterConsumer("primary")),
				ChangesStream: state(broker.ChangesStream),
				DocsStream:    state(broker.DocsStream),
			})
		}
	}()
	return out
}
