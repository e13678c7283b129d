package dev.flotilla.images;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.images.layout.OciLayoutWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ImageStoreTest {
  @TempDir Path base;

  private Path layout(String name, String greeting, int randomBytes) throws IOException {
    Path rootfs = Files.createDirectories(base.resolve("src-" + name.replace('/', '_').replace(':', '_')));
    Files.createDirectories(rootfs.resolve("etc"));
    Files.createDirectories(rootfs.resolve("work"));
    Files.writeString(rootfs.resolve("etc/greeting"), greeting);
    byte[] noise = new byte[randomBytes];
    new Random(greeting.hashCode()).nextBytes(noise);
    Files.write(rootfs.resolve("noise"), noise);
    Path layout = base.resolve("layout-" + rootfs.getFileName());
    OciLayoutWriter.write(rootfs, layout, name,
        OciLayoutWriter.Defaults.of(List.of("PATH=/bin", "GREETING=" + greeting), "/work", List.of("/bin/sh")));
    return layout;
  }

  private ImageStore store(Set<Digest> inUse, long cacheMax) {
    ImagesConfig cfg = ImagesConfig.defaults(base.resolve("store")).withCacheMax(cacheMax, Duration.ZERO);
    return new ImageStore(cfg, () -> Set.copyOf(inUse), Runnable::run);
  }

  @Test
  void anImportedImageResolvesWithItsConfigAndUnpacksTopFirst() throws Exception {
    ImageStore store = store(Set.of(), ImagesConfig.DEFAULT_CACHE_MAX);
    ResolvedImage img = store.importArchive(layout("test/app:1", "hello", 10), Optional.empty(), "tenant-a");
    assertEquals("docker.io/test/app:1", img.reference().orElseThrow().toString());
    assertEquals(List.of("PATH=/bin", "GREETING=hello"), img.config().env());
    assertEquals("/work", img.config().workingDir());
    assertEquals(List.of("/bin/sh"), img.config().cmd());
    assertEquals(1, img.layers().size());

    ResolvedImage again = store.resolve("test/app:1", "tenant-a").orElseThrow();
    assertEquals(img.manifestDigest(), again.manifestDigest());
    assertEquals(img.manifestDigest(), store.resolve(img.manifestDigest().toString(), "tenant-a").orElseThrow().manifestDigest());
    List<Path> dirs = store.layerDirs(img.manifestDigest());
    assertEquals(1, dirs.size());
    assertEquals("hello", Files.readString(dirs.get(0).resolve("etc/greeting")));
  }

  @Test
  void anotherTenantsImageIsNotFoundAndOwnNamesShadowSharedOnes() throws Exception {
    ImageStore store = store(Set.of(), ImagesConfig.DEFAULT_CACHE_MAX);
    ResolvedImage mine = store.importArchive(layout("app:1", "tenant a's", 10), Optional.empty(), "tenant-a");
    assertTrue(store.resolve("app:1", "tenant-b").isEmpty());
    assertTrue(store.resolve(mine.manifestDigest().toString(), "tenant-b").isEmpty(), "not even by digest");
    assertTrue(store.list("tenant-b").isEmpty());
    assertFalse(store.delete("app:1", "tenant-b"));

    ResolvedImage shared = store.importArchive(layout("docker.io/library/app:1", "shared", 10), Optional.empty(), ImageStore.SHARED);
    assertEquals(shared.manifestDigest(), store.resolve("app:1", "tenant-b").orElseThrow().manifestDigest());
    assertEquals(mine.manifestDigest(), store.resolve("app:1", "tenant-a").orElseThrow().manifestDigest());
    List<ImageSummary> a = store.list("tenant-a");
    assertEquals(1, a.size(), a.toString());
    assertEquals("tenant-a", a.get(0).owner());
    assertFalse(store.delete("app:1", "tenant-b"), "a tenant cannot delete a shared name");

    assertTrue(store.delete("app:1", "tenant-a"));
    assertEquals(shared.manifestDigest(), store.resolve("app:1", "tenant-a").orElseThrow().manifestDigest());
    assertFalse(store.blobs().contains(mine.manifestDigest()), "an unclaimed image not in use is collected");
    assertTrue(store.blobs().contains(shared.manifestDigest()));
  }

  @Test
  void leastRecentlyUsedImagesNotInUseAreEvictedWithTheirBlobsAndLayers() throws Exception {
    Set<Digest> inUse = ConcurrentHashMap.newKeySet();
    ImageStore store = store(inUse, Long.MAX_VALUE);
    ResolvedImage one = store.importArchive(layout("one:1", "one", 100_000), Optional.empty(), "t");
    ResolvedImage two = store.importArchive(layout("two:1", "two", 100_000), Optional.empty(), "t");
    inUse.add(one.manifestDigest());
    store.layerDirs(one.manifestDigest());
    List<Path> twoDirs = store.layerDirs(two.manifestDigest());
    ResolvedImage three = store.importArchive(layout("three:1", "three", 100_000), Optional.empty(), "t");
    // one is least recently used but in use; two goes; three fits then.
    ImageStore small = new ImageStore(ImagesConfig.defaults(base.resolve("store"))
        .withCacheMax(one.totalSize() + three.totalSize() + 1000, Duration.ZERO), () -> Set.copyOf(inUse), Runnable::run);
    small.resolve("three:1", "t");
    assertTrue(small.collectGarbage());

    assertTrue(small.resolve("two:1", "t").isEmpty());
    assertFalse(small.blobs().contains(two.manifestDigest()));
    assertFalse(small.blobs().contains(two.layers().get(0)));
    assertFalse(Files.exists(twoDirs.get(0)), "its layer directory is removed too");
    assertTrue(small.resolve("one:1", "t").isPresent(), "in use: kept although least recently used");
    assertTrue(small.resolve("three:1", "t").isPresent());
    assertTrue(small.blobs().contains(three.layers().get(0)));
    assertEquals(one.totalSize() + three.totalSize(), small.diskUsage());
  }

  @Test
  void importRefusesAnArchiveThatIsNeitherLayoutNorDockerSave() throws Exception {
    ImageStore store = store(Set.of(), ImagesConfig.DEFAULT_CACHE_MAX);
    Path empty = Files.createDirectories(base.resolve("empty"));
    Files.writeString(empty.resolve("README"), "x");
    ImageException e = assertThrows(ImageException.class, () -> store.importArchive(empty, Optional.empty(), "t"));
    assertTrue(e.getMessage().contains("neither an OCI image layout"), e.getMessage());
    Path tagOnly = layout("latest", "x", 1);
    e = assertThrows(ImageException.class, () -> store.importArchive(tagOnly, Optional.empty(), "t"));
    assertTrue(e.getMessage().contains("--name REPO:TAG"), e.getMessage());
    assertEquals("docker.io/named/now:2",
        store.importArchive(tagOnly, Optional.of("named/now:2"), "t").reference().orElseThrow().toString());
    assertNull(store.list("t").stream().filter(s -> s.name() == null).findFirst().orElse(null));
  }
}
