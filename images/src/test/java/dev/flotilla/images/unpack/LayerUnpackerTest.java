package dev.flotilla.images.unpack;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.TestTar;
import dev.flotilla.images.blob.BlobStore;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.stream.Stream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarConstants;
import org.apache.commons.compress.archivers.zip.ZipEncodingHelper;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LayerUnpackerTest {
  private static final LinkOption NOFOLLOW = LinkOption.NOFOLLOW_LINKS;

  @TempDir Path base;
  Path root;
  Path sentinel;
  BlobStore blobs;
  LayerUnpacker unpacker;

  @BeforeEach
  void setUp() throws IOException {
    root = base.resolve("store");
    sentinel = Files.createDirectories(base.resolve("sentinel"));
    Files.writeString(sentinel.resolve("secret"), "host secret");
    blobs = new BlobStore(root);
    unpacker = new LayerUnpacker(root, blobs, LayerUnpacker.DEFAULT_MAX_LAYER_BYTES, 10_000);
  }

  private Path unpack(byte[] tar) {
    return unpacker.unpack(blobs.put(tar, null), Digest.of(tar));
  }

  @Test
  void hostileEntriesStayInsideTheLayer() throws Exception {
    String unique = "flotilla-escape-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
    byte[] tar = new TestTar()
        .file("etc/passwd", "layer passwd")
        .file("../../../sentinel/dotdot", "x")
        .file("../../../../../../../../../../tmp/" + unique, "x")
        .file("/" + "abs/" + unique, "absolute")
        .symlink("a", sentinel.toString(), 0)
        .file("a/through-absolute-link", "x")
        .symlink("b", "../../../sentinel", 0)
        .file("b/through-relative-link", "x")
        // The brief's cases, aimed at a file that cannot exist yet (never at the host's real /etc/passwd):
        .symlink("etc-link", "/etc", 0)
        .file("etc-link/" + unique, "x")
        .symlink("up", "../../..", 0)
        .file("up/x", "x")
        .symlink("c", sentinel.toString(), 0)
        .hardlink("hl-host-passwd", "/etc/passwd")
        .hardlink("hl-dotdot", "../x")
        .hardlink("hl-through-link", "c/secret")
        .device("dev-char", TarConstants.LF_CHR)
        .device("dev-block", TarConstants.LF_BLK)
        .device("fifo", TarConstants.LF_FIFO)
        .bytes();
    Path layer = unpack(tar);

    try (Stream<Path> s = Files.list(sentinel)) {
      assertEquals(List.of(sentinel.resolve("secret")), s.toList(), "nothing may be written next to the sentinel");
    }
    assertEquals("host secret", Files.readString(sentinel.resolve("secret")));
    assertEquals(1, (int) Files.getAttribute(sentinel.resolve("secret"), "unix:nlink"), "no hard link to a host file");
    assertFalse(Files.exists(Path.of("/tmp", unique)));
    assertFalse(Files.exists(Path.of("/etc", unique), NOFOLLOW), "nothing written through a link to /etc");
    assertFalse(Files.exists(base.resolve("x"), NOFOLLOW), "nothing written through a link to ../../..");
    assertFalse(Files.exists(Path.of("/abs", unique)));
    try (Stream<Path> s = Files.list(base)) {
      assertEquals(List.of("sentinel", "store"), s.map(p -> p.getFileName().toString()).sorted().toList());
    }
    try (Stream<Path> s = Files.list(root)) {
      assertEquals(List.of("blobs", "layers"), s.map(p -> p.getFileName().toString()).sorted().toList());
    }

    assertEquals("absolute", Files.readString(layer.resolve("abs/" + unique)), "absolute names are made relative");
    assertTrue(Files.isSymbolicLink(layer.resolve("a")));
    assertTrue(Files.isSymbolicLink(layer.resolve("b")));
    // The host's /etc/passwd resolves to the layer's own etc/passwd: a link inside, never to the host.
    Path hl = layer.resolve("hl-host-passwd");
    assertEquals("layer passwd", Files.readString(hl));
    assertNotEquals(Files.getAttribute(Path.of("/etc/passwd"), "unix:ino"), Files.getAttribute(hl, "unix:ino"));
    assertFalse(Files.exists(layer.resolve("hl-dotdot"), NOFOLLOW));
    assertFalse(Files.exists(layer.resolve("hl-through-link"), NOFOLLOW));
    assertFalse(Files.exists(layer.resolve("dev-char"), NOFOLLOW));
    assertFalse(Files.exists(layer.resolve("dev-block"), NOFOLLOW));
    assertFalse(Files.exists(layer.resolve("fifo"), NOFOLLOW));
  }

  @Test
  void hardLinkToTheHostPasswdIsSkippedWhenTheLayerHasNone() throws Exception {
    Path layer = unpack(new TestTar().hardlink("hl", "/etc/passwd").bytes());
    assertFalse(Files.exists(layer.resolve("hl"), NOFOLLOW));
    assertFalse(Files.exists(layer.resolve("etc"), NOFOLLOW));
  }

  @Test
  void modesOwnershipAndTimesAreAppliedWithoutSetuid() throws Exception {
    Path layer = unpack(new TestTar()
        .file("bin/suid", "x", 04755, 1234, 5678)
        .dir("sgid", 02775)
        .dir("tmp", 01777)
        .file("ro", "x", 0400, 0, 0)
        .symlink("link", "bin/suid", 42)
        .bytes());
    assertEquals(0755, mode(layer.resolve("bin/suid")), "setuid cleared");
    assertEquals(0775, mode(layer.resolve("sgid")), "setgid cleared");
    assertEquals(01777, mode(layer.resolve("tmp")), "sticky kept");
    assertEquals(0400, mode(layer.resolve("ro")));
    assertEquals(1234, Files.getAttribute(layer.resolve("bin/suid"), "unix:uid"));
    assertEquals(5678, Files.getAttribute(layer.resolve("bin/suid"), "unix:gid"));
    assertEquals(42, Files.getAttribute(layer.resolve("link"), "unix:uid", NOFOLLOW), "lchown on the link itself");
    assertEquals(FileTime.from(Instant.parse("2001-01-01T00:00:00Z")), Files.getLastModifiedTime(layer.resolve("bin/suid")));
    assertEquals(FileTime.from(Instant.parse("2001-01-01T00:00:00Z")), Files.getLastModifiedTime(layer.resolve("tmp")),
        "directory times are set after their children");
  }

  @Test
  void whiteoutsBecomeOverlayWhiteoutsAndOpaqueDirectoriesGetTheXattr() throws Exception {
    Path layer = unpack(new TestTar()
        .file(".wh.gone", "")
        .dir("dir", 0755)
        .file("dir/.wh..wh..opq", "")
        .file("dir/new", "new")
        .bytes());
    Path wh = layer.resolve("gone");
    int fileType = (int) Files.getAttribute(wh, "unix:mode", NOFOLLOW) & 0170000;
    assertEquals(0020000, fileType, "a character device");
    assertEquals(0L, Files.getAttribute(wh, "unix:rdev", NOFOLLOW), "device 0:0");
    assertFalse(Files.exists(layer.resolve(".wh.gone"), NOFOLLOW));
    assertFalse(Files.exists(layer.resolve("dir/.wh..wh..opq"), NOFOLLOW));
    assertEquals("y", run("getfattr", "--absolute-names", "--only-values", "-n", "trusted.overlay.opaque", layer.resolve("dir").toString()));
  }

  @Test
  void anOverlayOfTwoLayersHidesWhatTheUpperWhitesOut() throws Exception {
    Path lower = unpack(new TestTar()
        .file("keep", "kept")
        .file("gone", "old")
        .file("dir/old", "old")
        .bytes());
    Path upper = unpack(new TestTar()
        .file(".wh.gone", "")
        .file("dir/.wh..wh..opq", "")
        .file("dir/new", "new")
        .bytes());
    Path mnt = Files.createDirectories(base.resolve("mnt"));
    run("mount", "-t", "overlay", "overlay", "-o", "lowerdir=" + upper + ":" + lower, mnt.toString());
    try {
      assertEquals("kept", Files.readString(mnt.resolve("keep")));
      assertFalse(Files.exists(mnt.resolve("gone"), NOFOLLOW), "whited out");
      assertFalse(Files.exists(mnt.resolve("dir/old"), NOFOLLOW), "opaque directory hides the lower one");
      assertEquals("new", Files.readString(mnt.resolve("dir/new")));
    } finally {
      run("umount", mnt.toString());
    }
  }

  @Test
  void aLayerIsUnpackedOnceEvenWhenAskedConcurrently() throws Exception {
    TestTar t = new TestTar();
    for (int i = 0; i < 2000; i++) {
      t.file("d" + (i % 20) + "/f" + i, "content " + i);
    }
    byte[] tar = TestTar.gzip(t.bytes());
    Digest layer = blobs.put(tar, null);
    ExecutorService pool = Executors.newFixedThreadPool(4);
    try {
      List<CompletableFuture<Path>> fs = new ArrayList<>();
      for (int i = 0; i < 4; i++) {
        fs.add(CompletableFuture.supplyAsync(() -> unpacker.unpack(layer, null), pool));
      }
      for (CompletableFuture<Path> f : fs) {
        assertEquals(unpacker.layerDir(layer), f.join());
      }
    } finally {
      pool.shutdownNow();
    }
    assertEquals(1, unpacker.unpackCount());
    assertEquals(unpacker.layerDir(layer), unpacker.unpack(layer, null), "a later request reuses it");
    assertEquals(1, unpacker.unpackCount());
    assertEquals("content 1999", Files.readString(unpacker.layerDir(layer).resolve("d19/f1999")));
  }

  @Test
  void aDiffIdMismatchLeavesNoLayerBehind() throws Exception {
    byte[] tar = new TestTar().file("f", "x").bytes();
    Digest layer = blobs.put(tar, null);
    Digest wrong = Digest.of("something else".getBytes(StandardCharsets.UTF_8));
    ImageException e = assertThrows(ImageException.class, () -> unpacker.unpack(layer, wrong));
    assertTrue(e.getMessage().contains("diff_id is " + wrong), e.getMessage());
    assertFalse(unpacker.isUnpacked(layer));
    try (Stream<Path> s = Files.list(root.resolve("layers"))) {
      assertEquals(0, s.count(), "no temp directory left");
    }
  }

  @Test
  void layersOverTheSizeLimitAndAbsurdHeadersAreRefused() throws Exception {
    LayerUnpacker small = new LayerUnpacker(root, blobs, 1000, 100);
    Digest big = blobs.put(new TestTar().file("f", "x".repeat(2000)).bytes(), null);
    ImageException e = assertThrows(ImageException.class, () -> small.unpack(big, null));
    assertTrue(e.getMessage().contains("claims 2000 bytes"), e.getMessage());

    // A header that claims 16 TiB, with no content behind it.
    TarArchiveEntry huge = new TarArchiveEntry("huge");
    huge.setSize(1L << 44);
    byte[] header = new byte[512];
    huge.writeEntryHeader(header, ZipEncodingHelper.getZipEncoding("UTF-8"), true);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.write(header);
    out.write(new byte[1024]);
    Digest absurd = blobs.put(out.toByteArray(), null);
    e = assertThrows(ImageException.class, () -> unpacker.unpack(absurd, null));
    assertTrue(e.getMessage().contains("claims " + (1L << 44) + " bytes"), e.getMessage());

    TestTar many = new TestTar();
    for (int i = 0; i < 101; i++) {
      many.dir("d" + i, 0755);
    }
    Digest tooMany = blobs.put(many.bytes(), null);
    e = assertThrows(ImageException.class, () -> small.unpack(tooMany, null));
    assertTrue(e.getMessage().contains("more than 100 entries"), e.getMessage());
  }

  @Test
  void zstdLayersAreRefusedClearly() {
    Digest z = blobs.put(new byte[] {0x28, (byte) 0xb5, 0x2f, (byte) 0xfd, 0, 0, 0, 0}, null);
    ImageException e = assertThrows(ImageException.class, () -> unpacker.unpack(z, null));
    assertTrue(e.getMessage().contains("zstd layers are not supported yet"), e.getMessage());
  }

  private static int mode(Path p) throws IOException {
    return (int) Files.getAttribute(p, "unix:mode", NOFOLLOW) & 07777;
  }

  static String run(String... cmd) throws IOException, InterruptedException {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
    int rc = p.waitFor();
    if (rc != 0) {
      throw new IOException(String.join(" ", cmd) + " failed (" + rc + "): " + out);
    }
    return out;
  }
}
