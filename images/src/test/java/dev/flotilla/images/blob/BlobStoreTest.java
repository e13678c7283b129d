package dev.flotilla.images.blob;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BlobStoreTest {
  @TempDir Path root;

  private static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  @Test
  void storesUnderItsDigestInPrivateDirectories() throws Exception {
    BlobStore store = new BlobStore(root);
    Digest d = store.put(bytes("layer"), Digest.of(bytes("layer")));
    assertEquals(root.resolve("blobs/sha256/" + d.hex()), store.path(d));
    assertTrue(store.contains(d));
    assertEquals(5, store.size(d));
    assertEquals("layer", new String(store.read(d, 100), StandardCharsets.UTF_8));
    for (Path p : new Path[] {root, root.resolve("blobs"), root.resolve("blobs/sha256")}) {
      assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(p)), p.toString());
    }
    assertEquals(Set.of(d), store.list());
  }

  @Test
  void aDigestMismatchIsRefusedAndNothingIsCached() throws Exception {
    BlobStore store = new BlobStore(root);
    Digest expected = Digest.of(bytes("what the manifest promised"));
    ImageException e = assertThrows(ImageException.class,
        () -> store.put(new ByteArrayInputStream(bytes("what arrived")), expected, -1));
    assertTrue(e.getMessage().contains("expected " + expected), e.getMessage());
    assertTrue(e.getMessage().contains("got " + Digest.of(bytes("what arrived"))), e.getMessage());
    assertFalse(store.contains(expected));
    assertFalse(store.contains(Digest.of(bytes("what arrived"))), "the bad content is not kept under its own digest either");
    try (Stream<Path> s = Files.list(root.resolve("blobs/sha256"))) {
      assertEquals(0, s.count(), "no temp file left");
    }
  }

  @Test
  void aWrongSizeIsRefusedWithoutReadingPastIt() throws Exception {
    BlobStore store = new BlobStore(root);
    byte[] b = bytes("0123456789");
    ImageException longer = assertThrows(ImageException.class,
        () -> store.put(new ByteArrayInputStream(b), Digest.of(b), 4));
    assertTrue(longer.getMessage().contains("larger than the expected 4 bytes"), longer.getMessage());
    ImageException shorter = assertThrows(ImageException.class,
        () -> store.put(new ByteArrayInputStream(b), Digest.of(b), 11));
    assertTrue(shorter.getMessage().contains("expected size 11 bytes, got 10"), shorter.getMessage());
    assertTrue(store.list().isEmpty());
    try (Stream<Path> s = Files.list(root.resolve("blobs/sha256"))) {
      assertEquals(0, s.count());
    }
  }

  @Test
  void readRefusesBlobsOverItsBound() {
    BlobStore store = new BlobStore(root);
    Digest d = store.put(bytes("x".repeat(100)), null);
    assertTrue(assertThrows(ImageException.class, () -> store.read(d, 10)).getMessage().contains("more than the 10"));
    assertThrows(ImageException.NotFound.class, () -> store.open(Digest.of(bytes("absent"))));
  }
}
