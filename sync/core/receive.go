package core

import "fmt"

// ReceiveChanges validates and applies change chunks a peer sent, for a
// caller that speaks the sync protocol itself (sync/engine) and uses the
// Doc only as validator and materializer. raws are the message's change
// chunks the caller does not have yet, in message order; from identifies
// the peer (any comparable value, such as its sync state) for the changes
// held back for their dependencies, which PendingDeps reports and which
// the same peer's later messages release.
//
// The rules are Receive's: every chunk must be an uncompressed change
// chunk, the ops of the batch together within Limits.MaxOpsPerMessage,
// each change valid against the document in the order the core will apply
// it; a change whose dependencies have not arrived is held (not applied,
// not returned) within Limits.MaxPendingChanges and MaxPendingBytes. It
// returns the changes it applied, in causal order: the batch's, and held
// ones whose dependencies it brought. An invalid batch is refused with an
// error wrapping ErrBadSyncMessage and an *InvalidChangeError (and
// ErrLimitExceeded when a bound is the reason); it changes nothing.
func (d *Doc) ReceiveChanges(raws [][]byte, from any) ([]Change, error) {
	if len(raws) == 0 {
		return nil, nil
	}
	batch, err := d.decodeChanges(raws)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	p, err := d.plan(batch, from, levelFull, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	out, err := d.apply(p, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	return out, nil
}

// decodeChanges decodes change chunks as parseSyncMessage decodes a
// message's, refusing more than Limits.MaxOpsPerMessage ops in all.
func (d *Doc) decodeChanges(raws [][]byte) ([]*changeChunk, error) {
	lim := &d.limits
	batch := make([]*changeChunk, 0, len(raws))
	ops := uint64(0)
	for i, raw := range raws {
		c, err := parseCounted(raw, i, lim, &ops)
		if err != nil {
			return nil, err
		}
		batch = append(batch, c)
	}
	return batch, nil
}

// CheckReadOnlyChanges decodes the change chunks a read-only peer sent,
// ops included, within Limits.MaxOpsPerMessage, as ReceiveReadOnly does
// before dropping them: a malformed one refuses the message (an error wrapping ErrBadSyncMessage and an
// *InvalidChangeError). They are not validated against the document.
func (d *Doc) CheckReadOnlyChanges(raws [][]byte) error {
	batch, err := d.decodeChanges(raws)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	for i, c := range batch {
		it := c.ops(&d.limits)
		for it.next() {
		}
		if it.err != nil {
			return fmt.Errorf("%w: %w", ErrBadSyncMessage, invalid(i, c.hash, it.err))
		}
	}
	return nil
}

// PendingDeps reports whether the change with hash h is held back for its
// dependencies (see Pending), and if so what it depends on.
func (d *Doc) PendingDeps(h Hash) ([]Hash, bool) {
	pc, ok := d.pending.m[h]
	if !ok {
		return nil, false
	}
	return pc.c.deps, true
}

// CheckSyncMessage checks a V1 sync message as Receive does before it
// applies anything: its structure, and every change decoded within the
// document's Limits (not validated against the document). It returns
// Receive's error for a message Receive would refuse at that stage
// (wrapping ErrBadSyncMessage), and nil otherwise. A room whose own
// decoder refused a message asks it for the reason a peer is given.
func (d *Doc) CheckSyncMessage(msg []byte) error {
	if len(msg) == 0 {
		return fmt.Errorf("%w: empty", ErrBadSyncMessage)
	}
	if _, err := parseSyncMessage(msg, &d.limits); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	return nil
}
