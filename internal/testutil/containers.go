package testutil

import (
	"context"
	"fmt"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// containerRedis starts a Redis container when Docker answers. The container
// lives as long as the test binary (testcontainers' reaper removes it).
func containerRedis() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := start(ctx, testcontainers.ContainerRequest{
		Image:        "redis:7-alpine",
		ExposedPorts: []string{"6379/tcp"},
		WaitingFor:   wait.ForListeningPort("6379/tcp"),
	})
	if err != nil {
		return "", err
	}
	host, port, err := endpoint(ctx, c, "6379/tcp")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("redis://%s:%s/0", host, port), nil
}

// containerPostgres starts a PostgreSQL container when Docker answers.
func containerPostgres() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := start(ctx, testcontainers.ContainerRequest{
		Image:        "postgres:16-alpine",
		ExposedPorts: []string{"5432/tcp"},
		Env:          map[string]string{"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "test"},
		WaitingFor:   wait.ForLog("database system is ready to accept connections").WithOccurrence(2),
	})
	if err != nil {
		return "", err
	}
	host, port, err := endpoint(ctx, c, "5432/tcp")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("postgres://postgres@%s:%s/test?sslmode=disable", host, port), nil
}

func start(ctx context.Context, req testcontainers.ContainerRequest) (c testcontainers.Container, err error) {
	// testcontainers panics in some set-ups without a Docker socket; a missing
	// Docker is an ordinary "not available" here.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("docker unavailable: %v", r)
		}
	}()
	return testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
}

func endpoint(ctx context.Context, c testcontainers.Container, port string) (string, string, error) {
	host, err := c.Host(ctx)
	if err != nil {
		return "", "", err
	}
	p, err := c.MappedPort(ctx, port)
	if err != nil {
		return "", "", err
	}
	return host, p.Port(), nil
}
