package dev.flotilla.images.shared;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.ImageStore;
import dev.flotilla.images.ImageSummary;
import dev.flotilla.images.ImagesConfig;
import dev.flotilla.images.ResolvedImage;
import dev.flotilla.images.layout.OciLayoutWriter;
import dev.flotilla.persistence.EmbeddedPostgresServer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.Set;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.io.TempDir;

/**
 * Node stores (one per "node" directory) sharing one real PostgreSQL: an import on one is usable on
 * another, verified blob by blob, per tenant; a corrupted chunk is refused and nothing cached;
 * deletes remove names and then the blobs nothing names.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class SharedImagesIT {
  static final String A = "tenant-a";
  static final String B = "tenant-b";

  EmbeddedPostgresServer pg;
  Path pgDir;
  SharedImages shared;
  @TempDir Path base;

  @BeforeAll
  void startPostgres() throws IOException {
    Path root = Path.of("target", "embedded-pg").toAbsolutePath();
    Files.createDirectories(root);
    pgDir = root.resolve(UUID.randomUUID().toString());
    pg = EmbeddedPostgresServer.start(pgDir);
    shared = new SharedImages(this::connection);
    shared.ensureSchema();
    shared.ensureSchema(); // idempotent
  }

  @AfterAll
  void stopPostgres() throws IOException {
    if (pg != null) pg.close();
    if (pgDir != null && Files.exists(pgDir)) {
      try (var all = Files.walk(pgDir)) {
        all.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      }
    }
  }

  @BeforeEach
  void emptyTables() throws SQLException {
    try (Connection c = connection(); Statement s = c.createStatement()) {
      s.execute("TRUNCATE flotilla_image_name, flotilla_image, flotilla_image_chunk, flotilla_image_blob");
    }
  }

  Connection connection() throws SQLException {
    return DriverManager.getConnection(pg.jdbcUrl(), pg.user(), pg.password());
  }

  ImageStore node(String name) {
    ImageStore s = new ImageStore(ImagesConfig.defaults(base.resolve(name)).withCacheMax(ImagesConfig.DEFAULT_CACHE_MAX, Duration.ZERO),
        Set::of, Runnable::run);
    s.share(shared);
    return s;
  }

  /** One layer: etc/greeting plus {@code noiseBytes} of random bytes (gzip cannot shrink them: several chunks). */
  Path layout(String name, String greeting, int noiseBytes) throws IOException {
    Path rootfs = Files.createDirectories(base.resolve("src-" + UUID.randomUUID()));
    Files.createDirectories(rootfs.resolve("etc"));
    Files.writeString(rootfs.resolve("etc/greeting"), greeting);
    byte[] noise = new byte[noiseBytes];
    new Random(greeting.hashCode()).nextBytes(noise);
    Files.write(rootfs.resolve("noise"), noise);
    Path layout = base.resolve("layout-" + UUID.randomUUID());
    OciLayoutWriter.write(rootfs, layout, name, OciLayoutWriter.Defaults.of(List.of("GREETING=" + greeting), "/", List.of("/bin/sh")));
    return layout;
  }

  long count(String sql) throws SQLException {
    try (Connection c = connection(); Statement s = c.createStatement(); ResultSet r = s.executeQuery(sql)) {
      r.next();
      return r.getLong(1);
    }
  }

  @Test
  void anImportOnOneNodeRunsOnAnotherForItsTenantOnly() throws Exception {
    ImageStore a = node("a");
    ImageStore b = node("b");
    ResolvedImage img = a.importArchive(layout("app:1", "hello from a", 2_500_000), Optional.empty(), A);
    Digest layer = img.layers().get(0);
    assertEquals(1, count("SELECT count(*) FROM flotilla_image_name"));
    assertEquals(3, count("SELECT count(*) FROM flotilla_image_blob"), "manifest, config, layer");
    assertEquals(3, count("SELECT count(*) FROM flotilla_image_chunk WHERE digest = '" + layer + "'"), "1 MiB chunks");

    // Another tenant: nothing, by name or digest, and nothing is fetched for it.
    assertTrue(b.resolve("app:1", B).isEmpty());
    assertTrue(b.resolve(img.manifestDigest().toString(), B).isEmpty());
    assertTrue(b.list(B).isEmpty());
    assertFalse(b.delete("app:1", B));
    assertFalse(b.delete(img.manifestDigest().toString(), B));
    assertTrue(b.blobs().list().isEmpty());

    // Its tenant: listed on b before b has it, then resolved (fetched, verified) and unpacked.
    List<ImageSummary> listed = b.list(A);
    assertEquals(1, listed.size(), listed.toString());
    assertEquals("docker.io/library/app:1", listed.get(0).name());
    assertEquals(img.manifestDigest(), listed.get(0).manifestDigest());
    assertEquals(A, listed.get(0).owner());
    ResolvedImage there = b.resolve("app:1", A).orElseThrow();
    assertEquals(img.manifestDigest(), there.manifestDigest());
    assertEquals(List.of("GREETING=hello from a"), there.config().env());
    assertEquals("hello from a", Files.readString(b.layerDirs(there.manifestDigest()).get(0).resolve("etc/greeting")));
    assertEquals(img.manifestDigest(), b.resolve(img.manifestDigest().toString(), A).orElseThrow().manifestDigest());
    assertEquals(1, b.list(A).size(), "one image, one name: " + b.list(A));

    // A third node resolves it by digest alone (a pinned sandbox restarting there).
    ImageStore c = node("c");
    assertEquals(img.manifestDigest(), c.resolve(img.manifestDigest().toString(), A).orElseThrow().manifestDigest());

    // The name moves with a new import of it; the old bytes go once nothing names them.
    ResolvedImage v2 = a.importArchive(layout("app:1", "second version", 1000), Optional.empty(), A);
    assertEquals(v2.manifestDigest(), b.resolve("app:1", A).orElseThrow().manifestDigest());
    assertEquals(0, count("SELECT count(*) FROM flotilla_image_blob WHERE digest = '" + layer + "'"));

    // Deleted through b: gone for every node, and its blobs from PostgreSQL.
    assertTrue(b.delete("app:1", A));
    assertTrue(a.resolve("app:1", A).isEmpty());
    assertTrue(a.list(A).isEmpty(), a.list(A).toString());
    assertTrue(b.list(A).isEmpty(), b.list(A).toString());
    assertEquals(0, count("SELECT count(*) FROM flotilla_image_blob"));
    assertEquals(0, count("SELECT count(*) FROM flotilla_image_chunk"));
    assertFalse(b.delete("app:1", A));
  }

  @Test
  void aCorruptedChunkIsRefusedAndNothingIsCached() throws Exception {
    ImageStore a = node("a2");
    ResolvedImage img = a.importArchive(layout("bad:1", "soon corrupted", 1_500_000), Optional.empty(), A);
    Digest layer = img.layers().get(0);
    byte[] original;
    try (Connection c = connection();
        PreparedStatement p = c.prepareStatement("SELECT data FROM flotilla_image_chunk WHERE digest = ? AND seq = 1")) {
      p.setString(1, layer.toString());
      try (ResultSet r = p.executeQuery()) {
        r.next();
        original = r.getBytes(1);
      }
    }
    byte[] flipped = original.clone();
    flipped[flipped.length / 2] ^= 1;
    setChunk(layer, flipped);

    ImageStore b = node("b2");
    ImageException refused = assertThrows(ImageException.class, () -> b.resolve("bad:1", A));
    assertTrue(refused.getMessage().contains("digest mismatch: expected " + layer), refused.getMessage());
    assertEquals(Set.of(), b.blobs().list(), "neither the bad layer nor the good manifest and config are kept");
    assertTrue(b.list(A).stream().allMatch(s -> s.lastUsed() == null), "nothing recorded: " + b.list(A));

    setChunk(layer, java.util.Arrays.copyOf(original, original.length + 1)); // one byte too many
    assertThrows(ImageException.class, () -> b.resolve("bad:1", A));
    assertEquals(Set.of(), b.blobs().list());

    setChunk(layer, original);
    assertEquals(img.manifestDigest(), b.resolve("bad:1", A).orElseThrow().manifestDigest());
    assertEquals(3, b.blobs().list().size());
  }

  void setChunk(Digest d, byte[] data) throws SQLException {
    try (Connection c = connection();
        PreparedStatement p = c.prepareStatement("UPDATE flotilla_image_chunk SET data = ? WHERE digest = ? AND seq = 1")) {
      p.setBytes(1, data);
      p.setString(2, d.toString());
      assertEquals(1, p.executeUpdate());
    }
  }
}
