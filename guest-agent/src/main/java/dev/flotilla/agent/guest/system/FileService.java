package dev.flotilla.agent.guest.system;

import dev.flotilla.agent.guest.AgentError;
import dev.flotilla.agent.guest.process.TenantRoot;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.FileInfo;
import dev.flotilla.agent.protocol.v1.MakeDirRequest;
import dev.flotilla.agent.protocol.v1.ReadFileRequest;
import dev.flotilla.agent.protocol.v1.ReadFileResponse;
import dev.flotilla.agent.protocol.v1.RemoveRequest;
import dev.flotilla.agent.protocol.v1.RemoveResponse;
import dev.flotilla.agent.protocol.v1.RenameRequest;
import dev.flotilla.agent.protocol.v1.StatRequest;
import dev.flotilla.agent.protocol.v1.WriteFileRequest;
import dev.flotilla.agent.protocol.v1.WriteFileResponse;
import com.google.protobuf.ByteString;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.SecureDirectoryStream;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The tenant's files: WriteFile and ReadFile (one chunk per call, at an offset, so any size fits
 * under the frame limit), Stat, MakeDir, Remove and Rename. Every path goes through
 * {@link Confined}: resolved inside the tenant's root, then reached through open directory
 * descriptors that never follow a link.
 */
public final class FileService {

  /** Deepest tree a recursive Remove descends (each level holds a descriptor while it is open). */
  static final int MAX_REMOVE_DEPTH = 256;
  private static final LinkOption NOFOLLOW = LinkOption.NOFOLLOW_LINKS;

  private final int chunkCap;
  private final TenantRoot root;

  public FileService(int chunkCap) {
    this(chunkCap, null);
  }

  /** @param root the tenant's root when the agent runs outside it, null when the agent's root is the tenant's */
  public FileService(int chunkCap, TenantRoot root) {
    this.chunkCap = chunkCap;
    this.root = root != null ? root : TenantRoot.filesOnly(Path.of("/"));
  }

  TenantRoot root() {
    return root;
  }

  public WriteFileResponse write(WriteFileRequest r) {
    long offset = offset(r.getOffset());
    if (r.getCreateParents() && r.getPath().startsWith("/")) makeDirs(parentOf(r.getPath()), 0755);
    try (Confined c = Confined.open(root, r.getPath(), true)) {
      if (c.name() == null) throw AgentError.precondition("cannot write " + c.tenantPath() + ": is a directory");
      try {
        FileChannel opened;
        boolean created = true;
        try {
          opened = channel(c, StandardOpenOption.WRITE, StandardOpenOption.CREATE_NEW);
        } catch (FileAlreadyExistsException e) {
          created = false;
          opened = r.getTruncate() ? channel(c, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)
              : channel(c, StandardOpenOption.WRITE);
        }
        try (FileChannel ch = opened) {
          if (created) chmod(c.dir(), c.name(), r.getMode() == 0 ? 0644 : r.getMode());
          ByteBuffer data = r.getData().asReadOnlyByteBuffer();
          long pos = offset;
          while (data.hasRemaining()) pos += ch.write(data, pos);
          return WriteFileResponse.newBuilder().setSize(ch.size()).build();
        }
      } catch (IOException e) {
        throw Confined.map("write", c.tenantPath(), e);
      }
    }
  }

  public ReadFileResponse read(ReadFileRequest r) {
    long offset = offset(r.getOffset());
    int length = r.getLength() == 0 ? chunkCap : Math.min(r.getLength(), chunkCap);
    try (Confined c = Confined.open(root, r.getPath(), true)) {
      if (c.name() == null) throw AgentError.precondition("cannot read " + c.tenantPath() + ": is a directory");
      try (FileChannel ch = channel(c, StandardOpenOption.READ)) {
        long size = ch.size();
        ByteBuffer buf = ByteBuffer.allocate((int) Math.max(0, Math.min(length, size - offset)));
        long pos = offset;
        while (buf.hasRemaining()) {
          int n = ch.read(buf, pos);
          if (n < 0) break;
          pos += n;
        }
        buf.flip();
        return ReadFileResponse.newBuilder()
            .setData(ByteString.copyFrom(buf))
            .setEof(pos >= size)
            .setSize(size)
            .build();
      } catch (IOException e) {
        throw Confined.map("read", c.tenantPath(), e);
      }
    }
  }

  public FileInfo stat(StatRequest r) {
    try (Confined c = Confined.open(root, r.getPath(), r.getFollowSymlinks())) {
      try {
        return c.info(root);
      } catch (IOException e) {
        throw Confined.map("stat", c.tenantPath(), e);
      }
    }
  }

  public FileInfo makeDir(MakeDirRequest r) {
    int mode = r.getMode() == 0 ? 0755 : r.getMode();
    if (r.getParents()) return makeDirs(r.getPath(), mode);
    try (Confined c = Confined.open(root, r.getPath(), false)) {
      if (c.name() == null) throw new AgentError(Error.Code.ALREADY_EXISTS, "cannot make directory /: already exists");
      try {
        mkdirAt(c.dir(), c.names(), c.tenantPath(), mode);
        return c.info(root);
      } catch (IOException e) {
        throw Confined.map("make directory", c.tenantPath(), e);
      }
    }
  }

  /** {@code mkdir -p}: every missing directory on the way, links followed inside the root; the last gets {@code mode}. */
  private FileInfo makeDirs(String path, int mode) {
    List<String> names = root.components(path, true);
    String tenantPath = TenantRoot.tenantPath(names);
    try (SecureDirectoryStream<Path> top = Confined.openDir(root, List.of(), tenantPath)) {
      SecureDirectoryStream<Path> d = top;
      try {
        for (int i = 0; i < names.size(); i++) {
          Path name = Confined.name(names.get(i));
          List<String> here = names.subList(0, i + 1);
          SecureDirectoryStream<Path> next;
          try {
            next = Confined.child(d, name, TenantRoot.tenantPath(here));
          } catch (NoSuchFileException e) {
            try {
              mkdirAt(d, here, TenantRoot.tenantPath(here), i == names.size() - 1 ? mode : 0755);
            } catch (FileAlreadyExistsException made) {
              // made by someone else meanwhile: as good
            }
            next = Confined.child(d, name, TenantRoot.tenantPath(here));
          }
          if (d != top) d.close();
          d = next;
        }
        return Confined.info(root, d, null, names.isEmpty() ? "/" : names.get(names.size() - 1), tenantPath, names);
      } finally {
        if (d != top) d.close();
      }
    } catch (IOException e) {
      throw Confined.map("make directory", tenantPath, e);
    }
  }

  /**
   * {@code mkdir} of the last of {@code names} in {@code parent}. Java has no mkdirat: the call goes
   * by path, so the parent's identity is checked before and the new directory's after, through the
   * descriptor; a tenant who swapped a directory meanwhile gets an error (the directory made by the
   * raced call may stay where the swap put it, empty).
   */
  private void mkdirAt(SecureDirectoryStream<Path> parent, List<String> names, String tenantPath, int mode)
      throws IOException {
    Path host = root.join(names);
    Path name = Confined.name(names.get(names.size() - 1));
    Confined.checkSame(host.getParent(), Confined.attributes(parent, null), tenantPath);
    Files.createDirectory(host);
    PosixFileAttributes made = Confined.attributes(parent, name);
    Confined.checkSame(host, made, tenantPath);
    if (!made.isDirectory()) throw Confined.raced(tenantPath);
    chmod(parent, name, mode);
  }

  public RemoveResponse remove(RemoveRequest r) {
    try (Confined c = Confined.open(root, r.getPath(), false)) {
      if (c.name() == null) throw AgentError.invalid("refusing to remove / (the sandbox's root)");
      try {
        PosixFileAttributes a = c.attributes();
        if (!a.isDirectory()) {
          c.dir().deleteFile(c.name());
          return RemoveResponse.newBuilder().setRemoved(1).build();
        }
        if (!r.getRecursive()) {
          c.dir().deleteDirectory(c.name());
          return RemoveResponse.newBuilder().setRemoved(1).build();
        }
        return RemoveResponse.newBuilder().setRemoved(removeTree(c.dir(), c.name(), c.tenantPath(), 1)).build();
      } catch (java.nio.file.DirectoryNotEmptyException e) {
        throw AgentError.precondition("cannot remove " + c.tenantPath() + ": directory not empty (remove it recursively)");
      } catch (IOException e) {
        throw Confined.map("remove", c.tenantPath(), e);
      }
    }
  }

  /** Removes directory {@code name} of {@code parent} and all under it, by descriptor; links are removed, never followed. */
  private static long removeTree(SecureDirectoryStream<Path> parent, Path name, String tenantPath, int depth)
      throws IOException {
    if (depth > MAX_REMOVE_DEPTH) {
      throw new AgentError(Error.Code.RESOURCE_EXHAUSTED, "cannot remove " + tenantPath + ": deeper than "
          + MAX_REMOVE_DEPTH + " levels");
    }
    long removed = 0;
    List<Path> batch = new ArrayList<>();
    do {
      batch.clear();
      // A directory stream is read once: each batch of names comes from a fresh descriptor, and
      // is removed after it was read, not while.
      try (SecureDirectoryStream<Path> dir = Confined.child(parent, name, tenantPath)) {
        for (Path p : dir) {
          batch.add(p.getFileName());
          if (batch.size() == 1024) break;
        }
        for (Path child : batch) {
          try {
            if (Confined.attributes(dir, child).isDirectory()) {
              removed += removeTree(dir, child, tenantPath + "/" + child, depth + 1);
            } else {
              dir.deleteFile(child);
              removed++;
            }
          } catch (NoSuchFileException gone) {
            // removed by someone else meanwhile
          }
        }
      }
    } while (!batch.isEmpty());
    parent.deleteDirectory(name);
    return removed + 1;
  }

  public void rename(RenameRequest r) {
    try (Confined from = Confined.open(root, r.getFrom(), false); Confined to = Confined.open(root, r.getTo(), false)) {
      if (from.name() == null || to.name() == null) throw AgentError.invalid("refusing to rename / (the sandbox's root)");
      try {
        from.attributes(); // NOT_FOUND names `from`
        if (!r.getOverwrite() && to.attributesIfExists() != null) {
          throw new AgentError(Error.Code.ALREADY_EXISTS, "cannot rename " + from.tenantPath() + " to " + to.tenantPath()
              + ": " + to.tenantPath() + " already exists (set overwrite to replace it)");
        }
      } catch (IOException e) {
        throw Confined.map("rename", from.tenantPath(), e);
      }
      try {
        from.dir().move(from.name(), to.dir(), to.name());
      } catch (IOException e) {
        throw Confined.map("rename " + from.tenantPath() + " to", to.tenantPath(), e);
      }
    }
  }

  private static FileChannel channel(Confined c, OpenOption... options) throws IOException {
    Set<OpenOption> opts = new HashSet<>(List.of(options));
    opts.add(NOFOLLOW);
    // Always a FileChannel on Linux (openat with O_NOFOLLOW): positional reads and writes.
    return (FileChannel) c.dir().newByteChannel(c.name(), opts);
  }

  /** chmod through the parent's descriptor (openat O_NOFOLLOW, fchmod): exact bits, whatever the umask. */
  private static void chmod(SecureDirectoryStream<Path> dir, Path name, int mode) throws IOException {
    dir.getFileAttributeView(name, PosixFileAttributeView.class, NOFOLLOW).setPermissions(permissions(mode));
  }

  private static String parentOf(String path) {
    int slash = path.lastIndexOf('/', path.endsWith("/") ? path.length() - 2 : path.length() - 1);
    return slash <= 0 ? "/" : path.substring(0, slash);
  }

  /** A uint64 offset past 2^63 arrives negative: no file is that large. */
  private static long offset(long offset) {
    if (offset < 0) throw AgentError.invalid("offset " + Long.toUnsignedString(offset) + " is past any file size");
    return offset;
  }

  static Set<PosixFilePermission> permissions(int mode) {
    PosixFilePermission[] bits = {
      PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_READ,
      PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_READ,
      PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_READ
    };
    Set<PosixFilePermission> set = new HashSet<>();
    for (int i = 0; i < bits.length; i++) if ((mode & (1 << i)) != 0) set.add(bits[i]);
    return set;
  }
}
