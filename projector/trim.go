package projector

import "context"

// Trim removes stream entries that every consumer group has acknowledged and
// that are older than Config.Retention (by entry ID time on the Now clock),
// and returns how many it removed. It never removes an entry some group has
// not acknowledged. With Retention zero it does nothing.
func (p *Projector) Trim(ctx context.Context) (int64, error) {
	if p.cfg.Retention <= 0 {
		return 0, nil
	}
	n, err := p.c.Trim(ctx, p.cfg.Now().Add(-p.cfg.Retention))
	if err != nil {
		return 0, err
	}
	p.m.Trimmed.Add(float64(n))
	return n, nil
}
