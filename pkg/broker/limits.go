package broker

import (
	"context"
	"fmt"
)

// MaxMessage is the largest message, headers included, that both the
// server the connection is on and stream take: a larger one is refused, by
// the client at once or by the stream in its publish acknowledgement.
func (c *Conn) MaxMessage(ctx context.Context, stream string) (int, error) {
	limit := MaxPayload
	if p := int(c.NC.MaxPayload()); p > 0 {
		limit = min(limit, p)
	}
	s, err := c.JS.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("opening stream %s: %w", stream, err)
	}
	if m := int(s.CachedInfo().Config.MaxMsgSize); m > 0 {
		limit = min(limit, m)
	}
	return limit, nil
}
