// Package testservers starts real servers for tests, each private to the
// test, on 127.0.0.1, and stops them when the test ends: a MariaDB server
// (Debian's mariadb-server) and an S3-compatible object store (versitygw
// serving a temporary directory). A test that needs one and cannot find
// its program is skipped with the command that installs it (or fails, with
// VOUCH_REQUIRE_TEST_SERVERS set).
//
// versitygw was chosen over MinIO because it is a single Go program that
// `go install` builds from the module proxy, it keeps objects as plain files
// (easy to inspect when a test fails), and it implements what tessera's AWS
// driver needs: conditional puts (If-None-Match) and per-object
// Cache-Control, plus bucket policies for anonymous reads.
package testservers

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/go-sql-driver/mysql"
)

// InstallHint is the command that installs the servers these tests need.
const InstallHint = "bash scripts/install-s3-test-deps.sh"

// MariaDB is a running private MariaDB server.
type MariaDB struct {
	Addr string // host:port
}

// StartMariaDB starts a MariaDB server with a fresh data directory. It
// runs without grant tables: any user name is accepted, with any password.
func StartMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	mariadbd := findProgram(t, "mariadbd", "/usr/sbin/mariadbd")
	installDB := findProgram(t, "mariadb-install-db", "/usr/bin/mariadb-install-db")
	dir, err := os.MkdirTemp("", "vouch-mariadb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	args := []string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal", "--skip-test-db"}
	if os.Getuid() == 0 {
		args = append(args, "--user=root")
	}
	if out, err := exec.Command(installDB, args...).CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	port := freePort(t)
	args = []string{"--no-defaults", "--datadir=" + data, "--socket=" + filepath.Join(dir, "sock"),
		"--port=" + strconv.Itoa(port), "--bind-address=127.0.0.1", "--skip-grant-tables",
		"--pid-file=" + filepath.Join(dir, "pid"), "--innodb-buffer-pool-size=64M", "--skip-log-bin",
		"--max-connections=1000"}
	if os.Getuid() == 0 {
		args = append(args, "--user=root")
	}
	m := &MariaDB{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	startServer(t, "mariadbd", exec.Command(mariadbd, args...), func() bool {
		db, err := sql.Open("mysql", m.dsn(""))
		if err != nil {
			return false
		}
		defer db.Close()
		return db.Ping() == nil
	})
	return m
}

func (m *MariaDB) dsn(database string) string {
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr, c.DBName = "root", "tcp", m.Addr, database
	return c.FormatDSN()
}

// NewDatabase creates an empty database and returns its DSN.
func (m *MariaDB) NewDatabase(t testing.TB, name string) string {
	t.Helper()
	db, err := sql.Open("mysql", m.dsn(""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE `" + name + "`"); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return m.dsn(name)
}

// S3 is a running private S3-compatible server.
type S3 struct {
	Endpoint             string // http://127.0.0.1:PORT
	AccessKey, SecretKey string
	Dir                  string // where it keeps the buckets
}

// StartS3 starts versitygw on a fresh directory.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	bin := findVersitygw(t)
	dir, err := os.MkdirTemp("", "vouch-s3")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port := freePort(t)
	s := &S3{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), AccessKey: "vouchtest", SecretKey: "vouchtestsecret", Dir: dir}
	cmd := exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey,
		"--port", fmt.Sprintf("127.0.0.1:%d", port), "posix", dir)
	startServer(t, "versitygw", cmd, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return s
}

// Client returns an S3 client for the server with the root credentials.
func (s *S3) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// NewPublicBucket creates a bucket that anyone may read without
// credentials, as a log's bucket behind a CDN would be, and returns its
// URL (ENDPOINT/BUCKET/).
func (s *S3) NewPublicBucket(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::%s/*"}]}`, name)
	if _, err := c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(name), Policy: aws.String(policy)}); err != nil {
		t.Fatalf("make bucket %s publicly readable: %v", name, err)
	}
	return s.Endpoint + "/" + name + "/"
}

// missing skips the test for want of a server, or fails it when
// VOUCH_REQUIRE_TEST_SERVERS is set (CI, where a skip would hide that the
// shared-log tests did not run).
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("VOUCH_REQUIRE_TEST_SERVERS") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// findProgram finds a program on PATH or at fallback, or skips the test.
func findProgram(t testing.TB, name, fallback string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	missing(t, "%s is not installed; install it with: %s", name, InstallHint)
	return ""
}

// findVersitygw looks in $VOUCH_TEST_BIN, then ~/.cache/vouch-test-bin
// (where the install script puts it), then PATH.
func findVersitygw(t testing.TB) string {
	t.Helper()
	var dirs []string
	if d := os.Getenv("VOUCH_TEST_BIN"); d != "" {
		dirs = append(dirs, d)
	}
	if h, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(h, ".cache", "vouch-test-bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	missing(t, "versitygw (an S3-compatible server) is not installed; install it with: %s", InstallHint)
	return ""
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer starts cmd, waits until ready reports true, and stops the
// server when the test ends.
func startServer(t testing.TB, name string, cmd *exec.Cmd, ready func() bool) {
	t.Helper()
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !ready() {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited at start-up: %v\n%s", name, err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become ready within 30s\n%s", name, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(b.b.String())
}
