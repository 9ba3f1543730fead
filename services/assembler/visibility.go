package assembler

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres flushes a commit record, and so lets logical decoding send the
// transaction, before it removes the transaction from the list of running
// ones. A build that reads rows in that window sees the old data yet is
// versioned with the new commit, and the correct build that follows is then
// refused as not newer. So before reading rows for a batch, the assembler
// waits until new snapshots see every transaction of the batch: snapshots
// taken after that include them, so every later query does too.

// rowReader is what awaitVisible needs from a pool or connection.
type rowReader interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// visibleWaitLog is how long a wait may last before it is logged: a
// transaction that stays invisible that long points at a stuck backend or
// a lagging read replica.
const visibleWaitLog = 5 * time.Second

// awaitVisible returns once every transaction in xids (committed ones, as
// decoded) is visible to a snapshot taken now.
func awaitVisible(ctx context.Context, db rowReader, xids map[uint32]bool, log *slog.Logger) error {
	if len(xids) == 0 {
		return nil
	}
	start, pause, logged := time.Now(), 500*time.Microsecond, false
	for {
		var text string
		if err := db.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&text); err != nil {
			return fmt.Errorf("reading the current snapshot: %w", err)
		}
		snap, err := parseSnapshot(text)
		if err != nil {
			return err
		}
		pending, waiting := uint32(0), false
		for x := range xids {
			if !snap.visible(x) {
				pending, waiting = x, true
				break
			}
		}
		if !waiting {
			return nil
		}
		if !logged && time.Since(start) > visibleWaitLog {
			log.Warn("waiting for a committed transaction to become visible before building its documents", "xid", pending, "snapshot", text)
			logged = true
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 20*time.Millisecond)
	}
}

// snapshot is pg_current_snapshot(): transactions below xmin are finished,
// those from xmax on had not started, those in xip were running.
type snapshot struct {
	xmin, xmax uint64
	xip        map[uint64]bool
}

// parseSnapshot reads the text form "xmin:xmax:xip,xip,…".
func parseSnapshot(text string) (snapshot, error) {
	parts := strings.Split(text, ":")
	if len(parts) != 3 {
		return snapshot{}, fmt.Errorf("unexpected snapshot %q", text)
	}
	var s snapshot
	var err error
	if s.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("snapshot %q: xmin: %w", text, err)
	}
	if s.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("snapshot %q: xmax: %w", text, err)
	}
	s.xip = map[uint64]bool{}
	if parts[2] != "" {
		for _, f := range strings.Split(parts[2], ",") {
			x, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return snapshot{}, fmt.Errorf("snapshot %q: running xid: %w", text, err)
			}
			s.xip[x] = true
		}
	}
	return s, nil
}

// visible reports whether a committed transaction, known by the 32-bit xid
// logical decoding gives, is visible in the snapshot. The xid is widened
// to 64 bits against xmax: xids compare modulo 2^32 within 2^31 of each
// other, as Postgres compares them.
func (s snapshot) visible(xid uint32) bool {
	full := int64(s.xmax) + int64(int32(xid-uint32(s.xmax)))
	if full < 0 || uint64(full) >= s.xmax {
		return false
	}
	return uint64(full) < s.xmin || !s.xip[uint64(full)]
}
