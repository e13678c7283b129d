package dev.flotilla.images;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.Date;
import java.util.zip.GZIPOutputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;

/** Builds layer tars in tests, hostile ones included (names and links are written as given). */
public final class TestTar {
  private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
  private final TarArchiveOutputStream tar;

  public TestTar() {
    tar = new TarArchiveOutputStream(bytes, "UTF-8");
    tar.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
    tar.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
  }

  public TestTar file(String name, String content) {
    return file(name, content, 0644, 0, 0);
  }

  public TestTar file(String name, String content, int mode, int uid, int gid) {
    byte[] b = content.getBytes(StandardCharsets.UTF_8);
    TarArchiveEntry e = new TarArchiveEntry(name, true);
    e.setSize(b.length);
    e.setMode(0100000 | mode);
    e.setIds(uid, gid);
    e.setModTime(new Date(978307200000L)); // 2001-01-01T00:00:00Z
    return put(e, b);
  }

  public TestTar dir(String name, int mode) {
    TarArchiveEntry e = new TarArchiveEntry(name.endsWith("/") ? name : name + "/", true);
    e.setMode(040000 | mode);
    e.setModTime(new Date(978307200000L));
    return put(e, null);
  }

  public TestTar symlink(String name, String target, int uid) {
    TarArchiveEntry e = new TarArchiveEntry(name, TarArchiveEntry.LF_SYMLINK, true);
    e.setLinkName(target);
    e.setIds(uid, uid);
    return put(e, null);
  }

  public TestTar hardlink(String name, String target) {
    TarArchiveEntry e = new TarArchiveEntry(name, TarArchiveEntry.LF_LINK, true);
    e.setLinkName(target);
    return put(e, null);
  }

  public TestTar device(String name, byte type) {
    TarArchiveEntry e = new TarArchiveEntry(name, type, true);
    e.setDevMajor(1);
    e.setDevMinor(3);
    return put(e, null);
  }

  private TestTar put(TarArchiveEntry e, byte[] content) {
    try {
      tar.putArchiveEntry(e);
      if (content != null) {
        tar.write(content);
      }
      tar.closeArchiveEntry();
      return this;
    } catch (IOException ex) {
      throw new UncheckedIOException(ex);
    }
  }

  public byte[] bytes() {
    try {
      tar.finish();
      tar.close();
      return bytes.toByteArray();
    } catch (IOException ex) {
      throw new UncheckedIOException(ex);
    }
  }

  public static byte[] gzip(byte[] plain) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
      gz.write(plain);
    } catch (IOException ex) {
      throw new UncheckedIOException(ex);
    }
    return out.toByteArray();
  }
}
