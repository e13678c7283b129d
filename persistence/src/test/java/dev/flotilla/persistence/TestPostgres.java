package dev.flotilla.persistence;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.UUID;
import java.util.stream.Stream;

/**
 * Test fixture: a real PostgreSQL in {@code target/embedded-pg/<random>} (not a JUnit temp dir:
 * as root, postgres runs as an unprivileged user that cannot enter mode-700 temp dirs).
 */
final class TestPostgres implements AutoCloseable {
  final Path dir;
  final EmbeddedPostgresServer server;

  private TestPostgres(Path dir, EmbeddedPostgresServer server) {
    this.dir = dir;
    this.server = server;
  }

  static TestPostgres start() throws IOException {
    Path dir = newDataDir();
    return new TestPostgres(dir, EmbeddedPostgresServer.start(dir));
  }

  static Path newDataDir() throws IOException {
    Path root = Path.of("target", "embedded-pg").toAbsolutePath();
    Files.createDirectories(root);
    return root.resolve(UUID.randomUUID().toString());
  }

  @Override
  public void close() throws IOException {
    try {
      server.close();
    } finally {
      deleteRecursively(dir);
      Files.deleteIfExists(server.logFile());
    }
  }

  static void deleteRecursively(Path p) throws IOException {
    if (!Files.exists(p)) {
      return;
    }
    try (Stream<Path> all = Files.walk(p)) {
      for (Path x : (Iterable<Path>) all.sorted(Comparator.reverseOrder())::iterator) {
        Files.deleteIfExists(x);
      }
    }
  }
}
