package main

import (
	"flag"

	"go.uber.org/zap"

	"github.com/linkbatch/linkbatch/batch"
)

// addBackupFlags adds --backup and --merge-metadata to the flags of
// 'linkbatch run'.
func addBackupFlags(fs *flag.FlagSet, cfg *config) {
	fs.StringVar(&cfg.Backup, "backup", "", "before writing to a pair, append both users (GET, whole, IdP tokens dropped) to this NDJSON `file`, synced; what 'linkbatch rollback' restores from")
	fs.Var((*mergeFlag)(&cfg.Batch.Merge), "merge-metadata", "merge the secondary's user_metadata and app_metadata into the primary's before linking; `policy`: none, primary-wins or secondary-wins (the side that wins a key both hold)")
}

// mergeFlag is the --merge-metadata flag.
type mergeFlag batch.MergePolicy

var _ flag.Value = (*mergeFlag)(nil)

func (m *mergeFlag) String() string {
	if m == nil || *m == "" {
		return string(batch.MergeNone)
	}
	return string(*m)
}

func (m *mergeFlag) Set(s string) error {
	p, err := batch.ParseMergePolicy(s)
	if err != nil {
		return err
	}
	*m = mergeFlag(p)
	return nil
}

// validateBackup checks --backup against the mode of the run.
func (c *config) validateBackup() error {
	if c.Backup == "" {
		return nil
	}
	if c.Batch.DryRun {
		return usagef("--backup goes with a real run: a dry run writes nothing to back up")
	}
	if c.Backup == "-" {
		return usagef("--backup needs a regular file, which a rollback reads back")
	}
	if stream, err := batch.IsStreamOut(c.Backup); err != nil || stream {
		return usagef("--backup needs a regular file, which a rollback reads back")
	}
	return nil
}

// openBackup opens and locks the backup (see batch.OpenBackup) and gives
// it to the runner; a real run without one is told, once, that it has no
// way back.
func (c *command) openBackup() error {
	cfg := c.cfg
	if cfg.Backup == "" {
		if !cfg.Batch.DryRun {
			c.log.Warn("no --backup: the users are not backed up before they are linked, and a link cannot be undone from the tenant " +
				"(the secondary's metadata is discarded); there will be no way back")
		}
		return nil
	}
	b, err := batch.OpenBackup(cfg.Backup, cfg.Resume)
	if err != nil {
		return err
	}
	log := c.log
	c.onClose(func() {
		if err := b.Close(); err != nil {
			log.Warn("backup not closed cleanly", zap.Error(err))
		}
	})
	c.runner.Backup = b
	log.Info("backing up both users of each row before writing to them", zap.String("backup", cfg.Backup),
		zap.String("merge_metadata", string(cfg.Batch.Merge)))
	return nil
}
