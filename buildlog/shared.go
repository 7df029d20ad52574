package buildlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	tesseraaws "github.com/transparency-dev/tessera/storage/aws"
)

// Shared places a log in S3-compatible object storage, with a
// MySQL-compatible database sequencing its entries and guarding its
// subjects (tessera's AWS driver). Every frontend of one log is configured
// with the same Shared and the same builder key; each needs nothing else in
// common. The bucket holds the published log in tlog-tiles layout, so
// followers may read it from the bucket's (or a CDN's) URL directly.
type Shared struct {
	// Bucket holds the tiles, entry bundles and checkpoint; it must exist.
	Bucket string
	// Prefix, if set, is prepended to every object name, to keep several
	// logs in one bucket.
	Prefix string
	// Endpoint is the S3 server's URL, for S3-compatible servers; empty
	// means AWS S3 itself. Requests then use path-style addressing
	// (ENDPOINT/BUCKET/OBJECT).
	Endpoint string
	// Region defaults to us-east-1.
	Region string
	// AccessKey and SecretKey are static credentials; if empty, the AWS
	// SDK's default chain (environment, shared files, instance role) is
	// used.
	AccessKey, SecretKey string
	// DSN is the database's data source name for
	// github.com/go-sql-driver/mysql, e.g.
	// "vouch:pw@tcp(db:3306)/vouchlog". The database must exist; tessera's
	// and vouch's tables are created in it.
	DSN string
	// StaleReservation is how long a subject reservation of a dead
	// frontend (one whose database session lock is gone) stays untouched
	// before another frontend resolves it from the log. A live frontend's
	// reservations are never resolved. Default DefaultStaleReservation.
	StaleReservation time.Duration
}

func openShared(ctx context.Context, opts Options) (*Log, error) {
	sh := opts.Shared
	cfg, dsn, err := sh.driverConfig(ctx)
	if err != nil {
		return nil, err
	}
	guard, err := openMySQLGuard(ctx, dsn, opts.Identity.Name, sh.StaleReservation)
	if err != nil {
		return nil, err
	}

	l := newLog(opts.Identity.Name)
	l.guard = guard
	bg, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	driver, err := tesseraaws.New(bg, cfg)
	if err != nil {
		l.closeAfterFailedOpen()
		return nil, fmt.Errorf("buildlog: shared log: %w", err)
	}
	if err := l.start(bg, driver, opts); err != nil {
		l.closeAfterFailedOpen()
		return nil, fmt.Errorf("buildlog: start the shared log in bucket %q: %w", sh.Bucket, err)
	}
	guard.reader = l.reader
	return l, nil
}

// driverConfig is the configuration of tessera's AWS driver for sh.
func (sh *Shared) driverConfig(ctx context.Context) (tesseraaws.Config, *mysql.Config, error) {
	if sh.Bucket == "" || sh.DSN == "" {
		return tesseraaws.Config{}, nil, errors.New("buildlog: a shared log needs both a bucket and a database DSN")
	}
	dsn, err := mysql.ParseDSN(sh.DSN)
	if err != nil {
		return tesseraaws.Config{}, nil, fmt.Errorf("buildlog: database DSN: %w (want e.g. user:password@tcp(host:3306)/database)", err)
	}
	region := sh.Region
	if region == "" {
		region = "us-east-1"
	}
	loadOpts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(region)}
	if sh.AccessKey != "" || sh.SecretKey != "" {
		loadOpts = append(loadOpts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(sh.AccessKey, sh.SecretKey, "")))
	}
	sdk, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return tesseraaws.Config{}, nil, fmt.Errorf("buildlog: S3 configuration: %w", err)
	}
	endpoint := sh.Endpoint
	return tesseraaws.Config{
		SDKConfig: &sdk,
		S3Options: func(o *s3.Options) {
			if endpoint != "" {
				o.BaseEndpoint = aws.String(endpoint)
				o.UsePathStyle = true
			}
		},
		Bucket: sh.Bucket,
		// tessera joins the prefix with filepath.Join.
		BucketPrefix: sh.Prefix,
		DSN:          dsn.FormatDSN(),
		// tessera's zero value keeps no idle connection: every statement
		// would open (and authenticate) a new one.
		MaxIdleConns: 16,
	}, dsn, nil
}

// scanEntries calls fn with every entry in [from, to) of the integrated
// log, in order, until fn returns false. to must not exceed the integrated
// size.
//
// An entry bundle is read at the width the current integrated size gives
// it: only the partial bundles of tree sizes the log actually reached were
// written, and the garbage collector removes them once the bundle is
// full, so a bundle that is missing is read again at the newer size.
func scanEntries(ctx context.Context, reader tessera.LogReader, from, to uint64, fn func(idx uint64, entry []byte) bool) error {
	for tries := 0; from < to; {
		size, err := reader.IntegratedSize(ctx)
		if err != nil {
			return fmt.Errorf("read the integrated size: %w", err)
		}
		bundle := from / 256
		var p uint8
		if n := size - bundle*256; n < 256 {
			p = uint8(n)
		}
		raw, err := reader.ReadEntryBundle(ctx, bundle, p)
		if isNotFound(err) && tries < 5 {
			tries++
			continue
		}
		if err != nil {
			return fmt.Errorf("read entry bundle %d: %w", bundle, err)
		}
		tries = 0
		var eb api.EntryBundle
		end := min(to, bundle*256+256) - bundle*256
		if err := eb.UnmarshalText(raw); err != nil || uint64(len(eb.Entries)) < end {
			return fmt.Errorf("entry bundle %d is corrupt (want %d entries): %v", bundle, end, err)
		}
		for i := from - bundle*256; i < end; i++ {
			if !fn(bundle*256+i, eb.Entries[i]) {
				return nil
			}
		}
		from = bundle*256 + end
	}
	return nil
}

// openMySQLDB opens a connection pool and checks that the server answers.
func openMySQLDB(ctx context.Context, dsn *mysql.Config) (*sql.DB, error) {
	connector, err := mysql.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	// Keep connections for the concurrent reservations; the default of two
	// idle ones would reconnect for most statements.
	db.SetMaxIdleConns(64)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("reach the database at %s: %w", dsn.Addr, err)
	}
	return db, nil
}
