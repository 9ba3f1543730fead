package broker_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

// BenchmarkDocumentsWire moves 1,000 documents of about 1 KiB per
// iteration through the embedded broker as an assembler and a writer do:
// published, fetched a writer's batch at a time, acked, removed. One
// document to a message is the wire before batching; "batched" is many to
// a message. It reports documents and messages per second and the CPU the
// process spent per 1,000 documents: the embedded server runs in it, so
// that counts storing, delivering, acking and removing.
func BenchmarkDocumentsWire(b *testing.B) {
	const n, size = 1000, 1000
	for _, bc := range []struct {
		name    string
		batched bool
	}{{"one per message", false}, {"batched", true}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			emb, err := broker.StartEmbedded(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer emb.Close()
			conn, err := emb.Connect(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			if err := conn.Setup(ctx, []string{"out"}); err != nil {
				b.Fatal(err)
			}
			cons, err := conn.Documents(ctx, "out")
			if err != nil {
				b.Fatal(err)
			}
			docs := docsOf("d", n, size)
			msgs := 0
			b.ResetTimer()
			cpu, start := cpuTime(), time.Now()
			for range b.N {
				var sent []broker.DocumentsSent
				if bc.batched {
					sent, _, err = publishDocs(ctx, conn, docs, broker.MaxPayload)
				} else {
					for _, d := range docs {
						s, _, err := publishDocs(ctx, conn, []*flussopb.Document{d}, broker.MaxPayload)
						if err != nil {
							b.Fatal(err)
						}
						sent = append(sent, s...)
					}
				}
				if err != nil {
					b.Fatal(err)
				}
				for _, s := range sent {
					if err := acked(s.Sent, nil); err != nil {
						b.Fatal(err)
					}
				}
				msgs += len(sent)
				for got := 0; got < n; {
					ms, err := cons.NextBytes(ctx, 1000, 16<<20, time.Second, 0)
					if err != nil {
						b.Fatal(err)
					}
					for _, m := range ms {
						got += len(m.Values)
						_ = m.Ack()
					}
				}
			}
			// The stream is done once every message is removed.
			for {
				p, err := conn.Progress(ctx, broker.DocsStream)
				if err != nil {
					b.Fatal(err)
				}
				if p.Pending == 0 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			took, spent := time.Since(start), cpuTime()-cpu
			b.StopTimer()
			total := float64(b.N * n)
			b.ReportMetric(total/took.Seconds(), "docs/s")
			b.ReportMetric(float64(msgs)/took.Seconds(), "msgs/s")
			b.ReportMetric(spent.Seconds()*1000/(total/1000), "cpu-ms/1kdocs")
		})
	}
}

// cpuTime is the CPU the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
