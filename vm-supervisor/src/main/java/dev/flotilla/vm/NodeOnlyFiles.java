package dev.flotilla.vm;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.SecureDirectoryStream;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributeView;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Files and directories only the node may touch, handled so that nothing a sandbox can write
 * steers the node: deletes never follow a symbolic link (not even one swapped in mid-delete),
 * paths read back from disk are checked to lie under the root the node chose, and private
 * directories and files are created with their final permissions (never world-readable, even
 * briefly).
 */
public final class NodeOnlyFiles {

  public static final Set<PosixFilePermission> DIR_MODE = PosixFilePermissions.fromString("rwx------");
  public static final Set<PosixFilePermission> FILE_MODE = PosixFilePermissions.fromString("rw-------");
  private static final Set<PosixFilePermission> GROUP_OR_OTHER = EnumSet.of(
      PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE,
      PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_EXECUTE);
  /** Rounds over a directory whose contents keep changing under us before giving up. */
  private static final int MAX_ROUNDS = 100;

  private NodeOnlyFiles() {}

  /** The uid this JVM runs as. */
  public static long nodeUid() {
    try {
      return ((Number) Files.getAttribute(Path.of("/proc/self"), "unix:uid")).longValue();
    } catch (IOException | RuntimeException e) {
      throw new IllegalStateException("cannot tell this process's uid from /proc/self: " + e.getMessage(), e);
    }
  }

  /**
   * Deletes {@code dir} and everything in it without ever following a symbolic link. Every step
   * works relative to an open directory ({@link SecureDirectoryStream}: openat/unlinkat), so a
   * process that swaps a directory for a link to elsewhere while this runs only gets its link
   * removed. A symbolic link named {@code dir} itself is removed, not followed. Missing: no-op.
   *
   * @throws IOException if something could not be deleted (what could be is gone)
   */
  public static void deleteTree(Path dir) throws IOException {
    Path abs = dir.toAbsolutePath().normalize();
    Path parent = abs.getParent();
    Path name = abs.getFileName();
    if (parent == null || name == null) throw new IOException("refusing to delete " + abs);
    DirectoryStream<Path> ds;
    try {
      ds = Files.newDirectoryStream(parent);
    } catch (NoSuchFileException e) {
      return;
    }
    try (ds) {
      if (!(ds instanceof SecureDirectoryStream<Path> sds)) {
        throw new IOException("this platform has no SecureDirectoryStream: cannot delete " + abs + " safely");
      }
      deleteEntry(sds, name, abs);
    }
  }

  /** Deletes {@code name} inside the open directory {@code sds}; {@code path} is for messages only. */
  private static void deleteEntry(SecureDirectoryStream<Path> sds, Path name, Path path) throws IOException {
    for (int round = 0; ; round++) {
      BasicFileAttributes a;
      try {
        a = sds.getFileAttributeView(name, BasicFileAttributeView.class, LinkOption.NOFOLLOW_LINKS).readAttributes();
      } catch (NoSuchFileException e) {
        return;
      }
      if (!a.isDirectory()) {
        try {
          sds.deleteFile(name); // a link is unlinked, never its target
          return;
        } catch (NoSuchFileException e) {
          return;
        } catch (FileSystemException e) {
          if (round < MAX_ROUNDS && isDirectoryNow(e)) continue; // swapped for a directory meanwhile
          throw e;
        }
      }
      SecureDirectoryStream<Path> child;
      try {
        child = sds.newDirectoryStream(name, LinkOption.NOFOLLOW_LINKS);
      } catch (NoSuchFileException e) {
        return;
      } catch (FileSystemException e) {
        // O_NOFOLLOW met a link (ELOOP) or a file (ENOTDIR): it was swapped since we looked.
        if (round < MAX_ROUNDS) continue;
        throw e;
      }
      try (child) {
        emptyDirectory(child, path);
      }
      try {
        sds.deleteDirectory(name);
        return;
      } catch (NoSuchFileException e) {
        return;
      } catch (FileSystemException e) {
        // refilled or swapped (for a link: ENOTDIR) since we emptied it: look again
        if (round >= MAX_ROUNDS) throw e;
      }
    }
  }

  private static boolean isDirectoryNow(FileSystemException e) {
    String r = e.getReason();
    return r != null && (r.contains("Is a directory") || r.contains("EISDIR"));
  }

  private static void emptyDirectory(SecureDirectoryStream<Path> dir, Path path) throws IOException {
    List<Path> names = new ArrayList<>();
    for (Path p : dir) names.add(p.getFileName());
    IOException first = null;
    for (Path n : names) {
      try {
        deleteEntry(dir, n, path.resolve(n));
      } catch (IOException e) {
        if (first == null) first = e;
      }
    }
    if (first != null) throw first;
  }

  /**
   * Checks that {@code p} is a path strictly under {@code root} that cannot lead elsewhere:
   * absolute, normalized (no {@code .} or {@code ..}), and no existing component below
   * {@code root}, {@code p} itself included, is a symbolic link; the components between them that
   * exist are directories.
   *
   * @return {@code p}
   * @throws IOException saying which rule {@code p} breaks
   */
  public static Path requireUnder(Path root, Path p) throws IOException {
    Path r = root.toAbsolutePath().normalize();
    if (!p.isAbsolute()) throw new IOException(p + " is not an absolute path");
    for (Path part : p) {
      if (part.toString().equals("..") || part.toString().equals(".")) throw new IOException(p + " contains '" + part + "'");
    }
    if (!p.normalize().equals(p)) throw new IOException(p + " is not normalized");
    if (!p.startsWith(r) || p.equals(r)) throw new IOException(p + " is not under " + r);
    Path at = r;
    Path rel = r.relativize(p);
    for (int i = 0; i < rel.getNameCount(); i++) {
      at = at.resolve(rel.getName(i));
      BasicFileAttributes a;
      try {
        a = Files.readAttributes(at, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
      } catch (NoSuchFileException e) {
        return p; // nothing below a missing component can be a link
      }
      if (a.isSymbolicLink()) throw new IOException(p + " leads through a symbolic link at " + at);
      if (i < rel.getNameCount() - 1 && !a.isDirectory()) throw new IOException(p + " leads through " + at + ", which is not a directory");
    }
    return p;
  }

  /**
   * Creates {@code dir} (and missing parents, with default modes) as a private directory: 0700,
   * created with that mode. An existing one must be a real directory (not a link) owned by this
   * process's uid; its mode is tightened to 0700.
   *
   * @return {@code dir}
   */
  public static Path createPrivateDir(Path dir) throws IOException {
    Path d = dir.toAbsolutePath().normalize();
    if (d.getParent() != null) Files.createDirectories(d.getParent());
    try {
      Files.createDirectory(d, PosixFilePermissions.asFileAttribute(DIR_MODE));
    } catch (java.nio.file.FileAlreadyExistsException e) {
      // checked below
    }
    PosixFileAttributes a = Files.readAttributes(d, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
    if (a.isSymbolicLink()) throw new IOException(d + " is a symbolic link, not a private directory");
    if (!a.isDirectory()) throw new IOException(d + " exists and is not a directory");
    long owner = ownerUid(d);
    if (owner != nodeUid()) throw new IOException(d + " is owned by uid " + owner + ", not by this node's uid " + nodeUid());
    if (!a.permissions().equals(DIR_MODE)) Files.setPosixFilePermissions(d, DIR_MODE);
    return d;
  }

  /**
   * Writes {@code content} to a new private file (0600 from its creation) and renames it over
   * {@code file}: readers see the old or the new content, and never a moment of wider access.
   */
  public static void writePrivateFile(Path file, byte[] content) throws IOException {
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    Files.deleteIfExists(tmp); // a link left there is removed, not followed
    try (SeekableByteChannel ch = Files.newByteChannel(tmp,
        Set.<java.nio.file.OpenOption>of(StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE, LinkOption.NOFOLLOW_LINKS),
        PosixFilePermissions.asFileAttribute(FILE_MODE))) {
      ByteBuffer b = ByteBuffer.wrap(content);
      while (b.hasRemaining()) ch.write(b);
    }
    Files.move(tmp, file, java.nio.file.StandardCopyOption.ATOMIC_MOVE, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
  }

  /**
   * Checks that {@code file} is something only the node wrote and can read: a regular file (not
   * a link), owned by the node's uid, with no access for group or others.
   *
   * @throws IOException saying which rule it breaks (and how to fix a mode)
   */
  public static void requirePrivateFile(Path file) throws IOException {
    PosixFileAttributes a = Files.readAttributes(file, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
    if (a.isSymbolicLink()) throw new IOException(file + " is a symbolic link");
    if (!a.isRegularFile()) throw new IOException(file + " is not a regular file");
    long owner = ownerUid(file);
    if (owner != nodeUid()) throw new IOException(file + " is owned by uid " + owner + ", not by this node's uid " + nodeUid());
    if (hasGroupOrOtherAccess(a.permissions())) {
      throw new IOException(file + " is accessible to group or others (" + PosixFilePermissions.toString(a.permissions())
          + "); run: chmod 600 " + file);
    }
  }

  /**
   * Reads a file the node wrote, as long as it still is one: a regular file (not a link), owned by
   * the node's uid, that group and others cannot write (nor read, unless {@code othersMayRead}),
   * at most {@code maxBytes}. The file's identity (device, inode, ctime) is taken before and after
   * reading and must not change: a file swapped in meanwhile (or swapped away and back: a rename
   * changes the ctime) is refused, for a directory a sandbox can write in.
   *
   * @throws IOException saying which rule the file breaks
   */
  public static byte[] readNodeFile(Path file, int maxBytes, boolean othersMayRead) throws IOException {
    Map<String, Object> before = identity(file, othersMayRead);
    byte[] content;
    try (SeekableByteChannel ch = Files.newByteChannel(file, Set.<java.nio.file.OpenOption>of(StandardOpenOption.READ, LinkOption.NOFOLLOW_LINKS))) {
      if (ch.size() > maxBytes) throw new IOException(file + " is larger than " + maxBytes + " bytes");
      ByteBuffer b = ByteBuffer.allocate((int) ch.size());
      while (b.hasRemaining() && ch.read(b) >= 0) {
        // to the end
      }
      content = java.util.Arrays.copyOf(b.array(), b.position());
    }
    if (!before.equals(identity(file, othersMayRead))) throw new IOException(file + " was replaced while it was read");
    return content;
  }

  private static Map<String, Object> identity(Path file, boolean othersMayRead) throws IOException {
    Map<String, Object> a = Files.readAttributes(file, "unix:mode,uid,dev,ino,ctime", LinkOption.NOFOLLOW_LINKS);
    int mode = (Integer) a.get("mode");
    int type = mode & 0170000;
    if (type == 0120000) throw new IOException(file + " is a symbolic link");
    if (type != 0100000) throw new IOException(file + " is not a regular file");
    long owner = ((Number) a.get("uid")).longValue();
    if (owner != nodeUid()) throw new IOException(file + " is owned by uid " + owner + ", not by this node's uid " + nodeUid());
    int forbidden = othersMayRead ? 0022 : 0077;
    if ((mode & forbidden) != 0) {
      throw new IOException(file + " is " + (othersMayRead ? "writable" : "accessible") + " by group or others (mode "
          + Integer.toOctalString(mode & 0777) + "); run: chmod 600 " + file);
    }
    return Map.of("dev", a.get("dev"), "ino", a.get("ino"), "ctime", a.get("ctime").toString(), "mode", mode, "uid", owner);
  }

  public static boolean hasGroupOrOtherAccess(Set<PosixFilePermission> perms) {
    for (PosixFilePermission p : perms) {
      if (GROUP_OR_OTHER.contains(p)) return true;
    }
    return false;
  }

  /** The owner of {@code p} itself (a link's own owner, not its target's). */
  public static long ownerUid(Path p) throws IOException {
    return ((Number) Files.getAttribute(p, "unix:uid", LinkOption.NOFOLLOW_LINKS)).longValue();
  }
}
