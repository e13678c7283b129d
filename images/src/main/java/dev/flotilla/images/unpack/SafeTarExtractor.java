package dev.flotilla.images.unpack;

import dev.flotilla.images.ImageException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributeView;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.apache.commons.compress.archivers.tar.TarConstants;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Applies one layer tar to a directory of its own, treating the tar as hostile (the rules of OCI
 * runtimes' unpackers): no entry lands outside the root, nothing is written through a symlink the
 * layer made, hard links stay inside, device nodes and FIFOs are dropped, setuid/setgid cleared,
 * and OCI whiteouts become overlayfs whiteouts. The caller owns the directory: nothing else
 * writes in it while this runs, so checking each path component without following links is
 * enough (no race to win).
 */
final class SafeTarExtractor {
  private static final Logger log = LoggerFactory.getLogger(SafeTarExtractor.class);

  static final String WHITEOUT_PREFIX = ".wh.";
  static final String OPAQUE = ".wh..wh..opq";
  private static final int NOBODY = 65534;

  private final Path root;
  private final long maxBytes;
  private final int maxEntries;
  private final String layerName;
  private long written;
  private int entries;
  private int skipped;
  /** Directories whose mtime is set at the end: adding their children would change it again. */
  private final Map<Path, FileTime> dirTimes = new LinkedHashMap<>();

  SafeTarExtractor(Path root, long maxBytes, int maxEntries, String layerName) {
    this.root = root;
    this.maxBytes = maxBytes;
    this.maxEntries = maxEntries;
    this.layerName = layerName;
  }

  /** Reads the tar to its end-of-archive marker; does not close {@code in}. */
  void extract(InputStream in) throws IOException {
    TarArchiveInputStream tar = new TarArchiveInputStream(in, "UTF-8");
    TarArchiveEntry e;
    while ((e = tar.getNextEntry()) != null) {
      if (++entries > maxEntries) {
        throw new ImageException("layer " + layerName + " has more than " + maxEntries + " entries; refused");
      }
      apply(e, tar);
    }
    List<Path> dirs = new ArrayList<>(dirTimes.keySet());
    for (int i = dirs.size() - 1; i >= 0; i--) {
      Path d = dirs.get(i);
      if (isRealDirectory(d)) {
        setTimes(d, dirTimes.get(d));
      }
    }
    if (skipped > 0) {
      log.warn("layer {}: {} unsafe or unsupported entries skipped", layerName, skipped);
    }
  }

  long bytesWritten() {
    return written;
  }

  private void apply(TarArchiveEntry e, InputStream content) throws IOException {
    String name = e.getName();
    List<String> parts = components(name);
    if (parts == null) {
      skip(name, "a '..' component would leave the layer");
      return;
    }
    if (isRegularFile(e) && (e.getSize() < 0 || e.getSize() > maxBytes - written)) {
      throw new ImageException("layer " + layerName + ": entry '" + name + "' claims " + e.getSize()
          + " bytes, more than the layer's remaining limit (" + (maxBytes - written) + " of " + maxBytes + "); refused");
    }
    if (parts.isEmpty()) {
      if (e.isDirectory()) {
        applyMetadata(root, e);
      }
      return;
    }
    Path parent = parentOf(parts, name);
    if (parent == null) {
      return;
    }
    String base = parts.get(parts.size() - 1);
    if (base.startsWith(WHITEOUT_PREFIX)) {
      whiteout(parent, base, name);
      return;
    }
    Path target = parent.resolve(base);
    BasicFileAttributes existing = attributes(target);
    if (existing != null && !(existing.isDirectory() && e.isDirectory())) {
      deleteTree(target);
    }
    if (e.isDirectory()) {
      if (existing == null || !existing.isDirectory()) {
        Files.createDirectory(target);
      }
      applyMetadata(target, e);
    } else if (e.isSymbolicLink()) {
      // The link's text is data: it is never followed by this unpacker, only by the sandbox, inside its root.
      Files.createSymbolicLink(target, Path.of(e.getLinkName()));
      applyMetadata(target, e);
    } else if (e.isLink()) {
      Path source = hardLinkSource(e.getLinkName());
      if (source == null) {
        skip(name, "hard link to '" + e.getLinkName() + "' does not name a regular file inside the layer");
        return;
      }
      Files.createLink(target, source);
    } else if (isRegularFile(e)) {
      // CREATE_NEW is O_EXCL: it never opens through a link left at this name.
      try (OutputStream out = Files.newOutputStream(target, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
        copy(content, out, e.getSize(), name);
      }
      applyMetadata(target, e);
    } else if (e.isCharacterDevice() || e.isBlockDevice() || e.isFIFO()) {
      skipped++;
      log.debug("layer {}: device or FIFO '{}' dropped", layerName, name);
    } else {
      skip(name, "unsupported entry type '" + (char) e.getLinkFlag() + "'");
    }
  }

  /** {@code .wh.NAME} hides NAME of the layers below; {@code .wh..wh..opq} hides the whole directory below. */
  private void whiteout(Path parent, String base, String name) throws IOException {
    if (base.equals(OPAQUE)) {
      OverlayMarks.opaque(parent);
      return;
    }
    String hidden = base.substring(WHITEOUT_PREFIX.length());
    if (hidden.isEmpty() || hidden.equals(".") || hidden.equals("..") || hidden.startsWith(WHITEOUT_PREFIX)) {
      skip(name, "not a whiteout this unpacker understands");
      return;
    }
    Path target = parent.resolve(hidden);
    if (attributes(target) != null) {
      deleteTree(target);
    }
    OverlayMarks.whiteout(target);
  }

  /**
   * The entry's directory, creating missing components; null (entry skipped) when a component is
   * a symlink or not a directory, because writing there would follow a link the layer planted.
   */
  private Path parentOf(List<String> parts, String name) throws IOException {
    Path p = root;
    for (int i = 0; i < parts.size() - 1; i++) {
      p = p.resolve(parts.get(i));
      BasicFileAttributes a = attributes(p);
      if (a == null) {
        Files.createDirectory(p);
        Files.setAttribute(p, "unix:mode", 0755, LinkOption.NOFOLLOW_LINKS);
      } else if (a.isSymbolicLink()) {
        skip(name, "its path goes through the symlink '" + root.relativize(p) + "'");
        return null;
      } else if (!a.isDirectory()) {
        skip(name, "'" + root.relativize(p) + "' is not a directory");
        return null;
      }
    }
    return p;
  }

  /** The regular file a hard link names, reached without following any link; null if none. */
  private Path hardLinkSource(String linkName) {
    List<String> parts = components(linkName);
    if (parts == null || parts.isEmpty()) {
      return null;
    }
    Path p = root;
    for (int i = 0; i < parts.size(); i++) {
      p = p.resolve(parts.get(i));
      BasicFileAttributes a = attributes(p);
      boolean last = i == parts.size() - 1;
      if (a == null || a.isSymbolicLink() || (last ? !a.isRegularFile() : !a.isDirectory())) {
        return null;
      }
    }
    return p;
  }

  private void copy(InputStream in, OutputStream out, long size, String name) throws IOException {
    byte[] buf = new byte[64 * 1024];
    long left = size;
    while (left > 0) {
      int r = in.read(buf, 0, (int) Math.min(buf.length, left));
      if (r < 0) {
        throw new ImageException("layer " + layerName + " is truncated inside '" + name + "'");
      }
      out.write(buf, 0, r);
      left -= r;
      written += r;
    }
  }

  /** Ownership from the tar (lchown for links), mode without setuid/setgid, and the mtime. */
  private void applyMetadata(Path p, TarArchiveEntry e) throws IOException {
    boolean link = e.isSymbolicLink();
    Files.setAttribute(p, "unix:uid", id(e.getLongUserId()), LinkOption.NOFOLLOW_LINKS);
    Files.setAttribute(p, "unix:gid", id(e.getLongGroupId()), LinkOption.NOFOLLOW_LINKS);
    if (!link) {
      // unix:mode is chmod, which follows links: p was just made here and is not one.
      Files.setAttribute(p, "unix:mode", e.getMode() & 01777, LinkOption.NOFOLLOW_LINKS);
    }
    FileTime mtime = FileTime.from(e.getLastModifiedDate().toInstant());
    if (e.isDirectory()) {
      dirTimes.put(p, mtime);
    } else {
      setTimes(p, mtime);
    }
  }

  private static int id(long id) {
    return id < 0 || id > Integer.MAX_VALUE ? NOBODY : (int) id;
  }

  private static void setTimes(Path p, FileTime mtime) {
    try {
      Files.getFileAttributeView(p, BasicFileAttributeView.class, LinkOption.NOFOLLOW_LINKS).setTimes(mtime, null, null);
    } catch (IOException | UnsupportedOperationException ex) {
      // a symlink's own time cannot be set everywhere; nothing reads it
    }
  }

  private void skip(String name, String why) {
    skipped++;
    log.warn("layer {}: entry '{}' skipped: {}", layerName, name, why);
  }

  /** Strictly a regular file: commons-compress's isFile() also says yes to devices and FIFOs. */
  static boolean isRegularFile(TarArchiveEntry e) {
    byte f = e.getLinkFlag();
    return f == TarConstants.LF_NORMAL || f == TarConstants.LF_OLDNORM || f == TarConstants.LF_CONTIG
        || f == TarConstants.LF_GNUTYPE_SPARSE;
  }

  /**
   * The name's components with "" and "." dropped (so an absolute name becomes relative to the
   * root); null when a component is "..".
   */
  static List<String> components(String name) {
    List<String> out = new ArrayList<>();
    for (String c : name.split("/")) {
      if (c.isEmpty() || c.equals(".")) {
        continue;
      }
      if (c.equals("..")) {
        return null;
      }
      out.add(c);
    }
    return out;
  }

  static BasicFileAttributes attributes(Path p) {
    try {
      return Files.readAttributes(p, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
    } catch (IOException e) {
      return null;
    }
  }

  private static boolean isRealDirectory(Path p) {
    BasicFileAttributes a = attributes(p);
    return a != null && a.isDirectory();
  }

  /** Deletes a file or a tree without following links (walkFileTree does not by default). */
  static void deleteTree(Path p) throws IOException {
    BasicFileAttributes a = attributes(p);
    if (a == null) {
      return;
    }
    if (!a.isDirectory()) {
      Files.delete(p);
      return;
    }
    Files.walkFileTree(p, new SimpleFileVisitor<>() {
      @Override
      public FileVisitResult visitFile(Path f, BasicFileAttributes attrs) throws IOException {
        Files.delete(f);
        return FileVisitResult.CONTINUE;
      }

      @Override
      public FileVisitResult postVisitDirectory(Path d, IOException exc) throws IOException {
        if (exc != null) {
          throw exc;
        }
        Files.delete(d);
        return FileVisitResult.CONTINUE;
      }
    });
  }
}
