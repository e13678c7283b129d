package dev.flotilla.images.unpack;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.blob.BlobStore;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.util.Comparator;
import java.util.Date;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.archivers.tar.TarConstants;

/**
 * The layer unpacker on hostile layers: tars the fuzzer builds entry by entry (names and link
 * targets with {@code ..}, absolute paths, whiteouts, links through links, devices, PAX records,
 * odd modes and ids), sometimes with their bytes damaged afterwards, or raw bytes. Unpacking either
 * succeeds or refuses with an {@link ImageException}; nothing outside the store changes, no entry
 * escapes the layer's directory and no setuid/setgid bit survives.
 *
 * <p>Runs as root here, as a node does (whiteouts are device nodes). Everything happens in a
 * temporary directory.
 */
class LayerUnpackFuzzTest {

  private static final Path BASE = tempDir();
  private static final Path STORE = BASE.resolve("store");
  private static final Path OUTSIDE = BASE.resolve("outside");
  private static final BlobStore BLOBS = new BlobStore(STORE);
  /** Small limits, so the fuzzer reaches them. */
  private static final LayerUnpacker UNPACKER = new LayerUnpacker(STORE, BLOBS, 4096, 64);
  private static final String[] NAMES = {"a", "b", "a/b", "./a", "/a", "..", "../outside/x", "a/../..", ".wh.a",
      ".wh..wh..opq", "a/.wh.b", "etc/passwd", "", ".", "/", "a/", "../../", "outside"};

  static {
    try {
      Files.createDirectories(OUTSIDE);
      Files.writeString(OUTSIDE.resolve("secret"), "host secret");
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  @FuzzTest(maxDuration = "10s")
  void unpack(FuzzedDataProvider data) throws Exception {
    byte[] layer = data.consumeBoolean() ? data.consumeRemainingAsBytes() : tar(data);
    Digest digest = BLOBS.put(layer, null);
    try {
      Path dir = UNPACKER.unpack(digest, null);
      assertTrue(dir.startsWith(STORE), "the layer's directory is in the store");
      checkLayer(dir);
    } catch (ImageException e) {
      assertNotNull(e.getMessage(), "a refusal says why");
    } finally {
      UNPACKER.delete(digest);
      BLOBS.delete(digest);
    }
    try (Stream<Path> outside = Files.walk(OUTSIDE)) {
      assertEquals(List.of(OUTSIDE, OUTSIDE.resolve("secret")), outside.sorted().toList(), "nothing written outside");
    }
    assertEquals("host secret", Files.readString(OUTSIDE.resolve("secret")));
    try (Stream<Path> top = Files.list(BASE)) {
      assertEquals(List.of(OUTSIDE, STORE), top.sorted().toList(), "nothing written beside the store");
    }
  }

  private static void checkLayer(Path dir) throws IOException {
    try (Stream<Path> all = Files.walk(dir)) {
      for (Path p : all.toList()) {
        assertTrue(p.toRealPath(LinkOption.NOFOLLOW_LINKS).startsWith(dir.toRealPath()), p + " escaped the layer");
        if (Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS)) {
          int mode = (Integer) Files.getAttribute(p, "unix:mode", LinkOption.NOFOLLOW_LINKS);
          assertEquals(0, mode & 06000, p + " kept a setuid/setgid bit: " + Integer.toOctalString(mode));
        }
      }
    }
  }

  /** A tar of fuzzed entries, written by commons-compress (so checksums hold), maybe damaged after. */
  private static byte[] tar(FuzzedDataProvider data) throws IOException {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (TarArchiveOutputStream tar = new TarArchiveOutputStream(bytes, "UTF-8")) {
      tar.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
      tar.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
      int n = data.consumeInt(0, 8);
      for (int i = 0; i < n; i++) {
        byte type = data.pickValue(new Byte[] {TarConstants.LF_NORMAL, TarConstants.LF_DIR, TarConstants.LF_SYMLINK,
            TarConstants.LF_LINK, TarConstants.LF_FIFO, TarConstants.LF_CHR, TarConstants.LF_BLK, TarConstants.LF_CONTIG,
            TarConstants.LF_GNUTYPE_SPARSE, (byte) 'Z'});
        TarArchiveEntry e = new TarArchiveEntry(name(data), type, true);
        if (type == TarConstants.LF_SYMLINK || type == TarConstants.LF_LINK) e.setLinkName(name(data));
        e.setMode(data.consumeInt(0, 07777));
        e.setUserId(data.consumeLong(-1, 1L << 33));
        e.setGroupId(data.consumeLong(-1, 1L << 33));
        e.setModTime(new Date(data.consumeLong(-1L << 40, 1L << 42)));
        if (data.consumeBoolean()) e.addPaxHeader(data.pickValue(new String[] {"path", "linkpath", "size", "mtime",
            "uid", "gid", "uname", "SCHILY.xattr.user.x", "GNU.sparse.size"}), data.consumeString(24));
        byte[] content = type == TarConstants.LF_NORMAL || type == TarConstants.LF_CONTIG
            ? data.consumeBytes(data.consumeInt(0, 600)) : new byte[0];
        e.setSize(content.length);
        tar.putArchiveEntry(e);
        tar.write(content);
        tar.closeArchiveEntry();
      }
      tar.finish();
    } catch (IllegalArgumentException | IOException e) {
      // commons-compress would not write this entry: keep what it wrote so far
    }
    byte[] out = bytes.toByteArray();
    int damage = data.consumeInt(0, 3);
    for (int i = 0; i < damage && out.length > 0; i++) {
      out[data.consumeInt(0, out.length - 1)] = data.consumeByte();
    }
    return out;
  }

  private static String name(FuzzedDataProvider data) {
    return data.consumeBoolean() ? data.pickValue(NAMES) : data.consumeString(40);
  }

  private static Path tempDir() {
    try {
      Path dir = Files.createTempDirectory("flotilla-unpack-fuzz");
      Files.setPosixFilePermissions(dir, Set.of(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE,
          PosixFilePermission.OWNER_EXECUTE));
      Runtime.getRuntime().addShutdownHook(new Thread(() -> {
        try (var files = Files.walk(dir)) {
          files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException ignored) {
          // best effort
        }
      }));
      return dir;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
