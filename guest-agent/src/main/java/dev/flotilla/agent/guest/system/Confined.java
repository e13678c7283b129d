package dev.flotilla.agent.guest.system;

import dev.flotilla.agent.guest.AgentError;
import dev.flotilla.agent.guest.process.TenantRoot;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.FileInfo;
import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.Path;
import java.nio.file.SecureDirectoryStream;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.util.List;

/**
 * A path of the tenant's, held open: the directory that contains it (an open file descriptor,
 * reached from the root one name at a time with {@code openat(..., O_NOFOLLOW)}: Java's
 * {@link SecureDirectoryStream}) and the last name in it.
 *
 * <p>Resolution has two steps. {@link TenantRoot#components} follows the tenant's links in user
 * space, inside the root, and yields plain names; the walk then opens them one by one from the
 * root's descriptor and refuses a name that is a link by now. So a tenant who swaps a directory for
 * a link between the two steps gets an error ({@code FAILED_PRECONDITION}, "changed while ..."),
 * never an operation outside the root: every call that Java offers relative to a directory
 * descriptor (open, stat, unlink, rename, list, chmod) goes through {@link #dir} with
 * {@code NOFOLLOW_LINKS}. What Java offers only by path (mkdir, readlink, inotify registration) is
 * checked before and after; see {@link #checkSame}.
 *
 * @param dir the open parent directory, or the root itself when {@code name} is null
 * @param name the last component (one name, never {@code .}/{@code ..}), null for the root
 * @param names every component from the root
 * @param tenantPath how the tenant names it: {@code /a/b}
 */
record Confined(SecureDirectoryStream<Path> dir, Path name, List<String> names, String tenantPath)
    implements AutoCloseable {

  private static final LinkOption[] NOFOLLOW = {LinkOption.NOFOLLOW_LINKS};
  /** Attempts when a name turns into a link between resolution and walk (a tenant at work). */
  private static final int ATTEMPTS = 4;

  /** Opens the parent of {@code path}; the last component is followed (inside the root) only if {@code followLast}. */
  static Confined open(TenantRoot root, String path, boolean followLast) {
    for (int attempt = 1; ; attempt++) {
      List<String> names = root.components(path, followLast);
      String tenantPath = TenantRoot.tenantPath(names);
      try {
        if (names.isEmpty()) return new Confined(openDir(root, names, tenantPath), null, names, tenantPath);
        SecureDirectoryStream<Path> parent = openDir(root, names.subList(0, names.size() - 1), tenantPath);
        return new Confined(parent, name(names.get(names.size() - 1)), names, tenantPath);
      } catch (Raced r) {
        if (attempt == ATTEMPTS) throw raced(tenantPath);
      } catch (IOException e) {
        throw map("resolve", tenantPath, e);
      }
    }
  }

  /** Opens the directory at {@code names} itself, walked from the root's descriptor without following links. */
  static SecureDirectoryStream<Path> openDir(TenantRoot root, List<String> names, String tenantPath) throws IOException {
    SecureDirectoryStream<Path> d = secure(Files.newDirectoryStream(root.root()));
    try {
      for (String n : names) {
        SecureDirectoryStream<Path> next = child(d, name(n), tenantPath);
        d.close();
        d = next;
      }
      return d;
    } catch (IOException | RuntimeException e) {
      d.close();
      throw e;
    }
  }

  /** The directory {@code name} in {@code dir}, not followed if it is a link (that is a race: {@link Raced}). */
  static SecureDirectoryStream<Path> child(SecureDirectoryStream<Path> dir, Path name, String tenantPath)
      throws IOException {
    try {
      return dir.newDirectoryStream(name, NOFOLLOW);
    } catch (NotDirectoryException e) {
      throw e;
    } catch (FileSystemException e) {
      if (isLink(dir, name)) throw new Raced();
      throw e;
    }
  }

  /** The directory this path names, opened (its last component followed as the open asked). */
  SecureDirectoryStream<Path> openSelf() throws IOException {
    if (name == null) return dir;
    return child(dir, name, tenantPath);
  }

  /** {@code lstat} of the entry, through the open parent; of the root when {@code name} is null. */
  PosixFileAttributes attributes() throws IOException {
    return attributes(dir, name);
  }

  static PosixFileAttributes attributes(SecureDirectoryStream<Path> dir, Path name) throws IOException {
    PosixFileAttributeView v = name == null ? dir.getFileAttributeView(PosixFileAttributeView.class)
        : dir.getFileAttributeView(name, PosixFileAttributeView.class, NOFOLLOW);
    return v.readAttributes();
  }

  /** The entry's attributes, or null when there is none. */
  PosixFileAttributes attributesIfExists() throws IOException {
    try {
      return attributes();
    } catch (NoSuchFileException e) {
      return null;
    }
  }

  /** The entry as the protocol describes it. */
  FileInfo info(TenantRoot root) throws IOException {
    return info(root, dir, name, names.isEmpty() ? "/" : names.get(names.size() - 1), tenantPath, names);
  }

  /**
   * {@code name} in {@code dir} as a FileInfo whose path is {@code shownPath}; {@code names} locate
   * it from the root for readlink, the one call Java offers by path only.
   */
  static FileInfo info(TenantRoot root, SecureDirectoryStream<Path> dir, Path name, String shownName, String shownPath,
      List<String> names) throws IOException {
    PosixFileAttributes a = attributes(dir, name);
    FileInfo.Builder b = FileInfo.newBuilder()
        .setName(shownName)
        .setPath(shownPath)
        .setType(type(a))
        .setSize(a.size())
        .setMode(mode(a))
        .setMtimeUnixMs(a.lastModifiedTime().toMillis());
    if (a.isSymbolicLink()) {
      Path host = root.join(names);
      try {
        String target = Files.readSymbolicLink(host).toString();
        // By path: only kept if the path still names the entry the descriptor saw.
        if (sameEntry(host, a)) b.setSymlinkTarget(target);
      } catch (IOException e) {
        // gone meanwhile: an entry without its target
      }
    }
    return b.build();
  }

  /**
   * After a call Java offers only by path ({@code host}): the path names the same entry as
   * {@code expected} (read through a descriptor), else the tenant changed the tree under the call.
   */
  static void checkSame(Path host, BasicFileAttributes expected, String tenantPath) {
    if (!sameEntry(host, expected)) throw raced(tenantPath);
  }

  private static boolean sameEntry(Path host, BasicFileAttributes expected) {
    try {
      Object key = Files.readAttributes(host, BasicFileAttributes.class, NOFOLLOW).fileKey();
      return key != null && key.equals(expected.fileKey());
    } catch (IOException e) {
      return false;
    }
  }

  static FileInfo.Type type(BasicFileAttributes a) {
    if (a.isSymbolicLink()) return FileInfo.Type.SYMLINK;
    if (a.isDirectory()) return FileInfo.Type.DIR;
    if (a.isRegularFile()) return FileInfo.Type.FILE;
    return FileInfo.Type.OTHER;
  }

  static int mode(PosixFileAttributes a) {
    int mode = 0;
    for (PosixFilePermission p : a.permissions()) mode |= 1 << (8 - p.ordinal());
    return mode;
  }

  private static boolean isLink(SecureDirectoryStream<Path> dir, Path name) {
    try {
      return attributes(dir, name).isSymbolicLink();
    } catch (IOException e) {
      return false;
    }
  }

  /** One name of the tenant's as a relative Path, so that every *at() call is relative to its directory. */
  static Path name(String n) {
    if (n.isEmpty() || n.equals(".") || n.equals("..") || n.indexOf('/') >= 0) {
      throw new IllegalArgumentException("not a single name: '" + n + "'");
    }
    try {
      return Path.of(n);
    } catch (InvalidPathException e) {
      throw AgentError.invalid("name '" + n.replace('\0', '?') + "' is not a valid file name: " + e.getReason());
    }
  }

  @SuppressWarnings("unchecked")
  static SecureDirectoryStream<Path> secure(DirectoryStream<Path> s) throws IOException {
    if (s instanceof SecureDirectoryStream<?> sds) return (SecureDirectoryStream<Path>) sds;
    s.close();
    throw new IOException("this platform offers no openat-style directory access: refusing to touch tenant paths");
  }

  static AgentError raced(String tenantPath) {
    return AgentError.precondition(tenantPath + " changed while the agent was resolving it (a directory became a"
        + " symbolic link); try again");
  }

  /** A file system error as the tenant may see it: in their own names, never the agent's paths. */
  static AgentError map(String op, String tenantPath, IOException e) {
    String what = "cannot " + op + " " + tenantPath + ": ";
    if (e instanceof NoSuchFileException) return AgentError.notFound(what + "no such file or directory");
    if (e instanceof FileAlreadyExistsException) return new AgentError(Error.Code.ALREADY_EXISTS, what + "already exists");
    if (e instanceof NotDirectoryException) return AgentError.precondition(what + "not a directory");
    if (e instanceof DirectoryNotEmptyException) return AgentError.precondition(what + "directory not empty");
    if (e instanceof AccessDeniedException) return new AgentError(Error.Code.PERMISSION_DENIED, what + "permission denied");
    if (e instanceof FileSystemException fse && fse.getReason() != null) {
      String reason = fse.getReason();
      if (reason.contains("Is a directory")) return AgentError.precondition(what + "is a directory");
      if (reason.contains("Not a directory")) return AgentError.precondition(what + "not a directory");
      if (reason.contains("symbolic link")) return raced(tenantPath);
      return AgentError.invalid(what + reason);
    }
    return new AgentError(Error.Code.INTERNAL, what + e.getClass().getSimpleName() + ": " + e.getMessage());
  }

  @Override
  public void close() {
    try {
      dir.close();
    } catch (IOException ignored) {
      // a directory descriptor: nothing to flush
    }
  }

  /** A name became a symbolic link between resolution and walk. */
  private static final class Raced extends IOException {
    Raced() {
      super("raced", null);
    }
  }
}
