package dev.flotilla.images;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pulls from a real registry (Debian's docker-registry on loopback) images built with umoci and
 * pushed with skopeo.
 */
class RegistryPullIT {
  @TempDir static Path dir;
  static TestRegistry registry;
  static ExecutorService pool;

  @BeforeAll
  static void start() throws Exception {
    TestUmoci.requireTools();
    registry = TestRegistry.start(dir, "127.0.0.1", "");
    pool = Executors.newFixedThreadPool(4);
  }

  @AfterAll
  static void stop() {
    if (pool != null) {
      pool.shutdownNow();
    }
    if (registry != null) {
      registry.close();
    }
  }

  private static ImageStore store(String name, Executor executor) {
    return new ImageStore(ImagesConfig.defaults(dir.resolve(name)), Set::of, executor);
  }

  @Test
  void pullChecksContentCachesDedupesAndKeepsOldDigestsAfterTheTagMoves() throws Exception {
    Path layout = dir.resolve("layout-app");
    TestUmoci.build(dir, layout, "first", Map.of("etc/greeting", "first"), "FOO=bar", "/work");
    Digest first = TestUmoci.push(layout, "first", registry.address(), "test/app:v1");

    ImageStore store = store("store-a", pool);
    ImageReference ref = ImageReference.parse(registry.address() + "/test/app:v1");
    ResolvedImage img = store.pull(ref, Optional.empty(), "tenant-a").join();
    assertEquals(first, img.manifestDigest(), "the manifest digest the registry reports");
    assertTrue(img.config().env().contains("FOO=bar"), img.config().env().toString());
    assertEquals("/work", img.config().workingDir());
    List<Path> dirs = store.layerDirs(img.manifestDigest());
    assertEquals("first", Files.readString(dirs.get(0).resolve("etc/greeting")));
    assertTrue(Files.isDirectory(dirs.get(0).resolve("work")));
    assertTrue(store.resolve(ref.toString(), "tenant-b").isPresent(), "a pull without credentials is shared");

    // Again: the manifest is asked for (tags move) but no blob is downloaded.
    long blobGets = registry.blobGets("test/app");
    assertEquals(img.layers().size() + 1, blobGets, "config + layers, once each");
    long downloads = store.registry().blobDownloads();
    ResolvedImage again = store.pull(ref, Optional.empty(), "tenant-a").join();
    assertEquals(first, again.manifestDigest());
    assertEquals(blobGets, registry.blobGets("test/app"), "no blob was downloaded again");
    assertEquals(downloads, store.registry().blobDownloads());

    // Two pulls of one reference at once share one download.
    CountDownLatch gate = new CountDownLatch(1);
    Executor gated = r -> pool.execute(() -> {
      try {
        gate.await();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      r.run();
    });
    ImageStore fresh = store("store-b", gated);
    CompletableFuture<ResolvedImage> p1 = fresh.pull(ref, Optional.empty(), "tenant-a");
    CompletableFuture<ResolvedImage> p2 = fresh.pull(ref, Optional.empty(), "tenant-b");
    assertSame(p1, p2, "the second pull joins the first");
    gate.countDown();
    assertEquals(first, p1.join().manifestDigest());
    assertEquals(2 * blobGets, registry.blobGets("test/app"), "the fresh store downloaded each blob once");

    // Move the tag: the first digest still resolves to the first bytes.
    TestUmoci.build(dir, layout, "second", Map.of("etc/greeting", "second"), "FOO=baz", "/work");
    Digest second = TestUmoci.push(layout, "second", registry.address(), "test/app:v1");
    assertNotEquals(first, second);
    ResolvedImage moved = store.pull(ref, Optional.empty(), "tenant-a").join();
    assertEquals(second, moved.manifestDigest());
    assertEquals(second, store.resolve(ref.toString(), "tenant-a").orElseThrow().manifestDigest());
    ResolvedImage old = store.resolve(first.toString(), "tenant-a").orElseThrow();
    assertEquals(first, old.manifestDigest());
    assertEquals("first", Files.readString(store.layerDirs(first).get(0).resolve("etc/greeting")));
    assertEquals("second", Files.readString(store.layerDirs(second).get(0).resolve("etc/greeting")));

    // By digest, an image already here needs no registry at all.
    long before = registry.blobGets("test/app");
    ResolvedImage byDigest = store.pull(ref.withDigest(first), Optional.empty(), "tenant-a").join();
    assertEquals(first, byDigest.manifestDigest());
    assertEquals(before, registry.blobGets("test/app"));
    assertEquals(second, store.resolve(ref.toString(), "tenant-a").orElseThrow().manifestDigest(),
        "a pull by digest leaves the tag where the last pull by tag found it");
  }

  @Test
  void unknownImagesAndWrongDigestsAreClearErrors() {
    ImageStore store = store("store-errors", pool);
    ImageReference missing = ImageReference.parse(registry.address() + "/test/missing:v1");
    Throwable e = assertThrowsCause(store.pull(missing, Optional.empty(), ImageStore.SHARED));
    assertTrue(e instanceof ImageException.NotFound, e.toString());
    assertTrue(e.getMessage().contains("not found in registry " + registry.address()), e.getMessage());
  }

  static Throwable assertThrowsCause(CompletableFuture<?> f) {
    try {
      f.join();
    } catch (java.util.concurrent.CompletionException e) {
      return e.getCause();
    }
    throw new AssertionError("expected the pull to fail");
  }
}
