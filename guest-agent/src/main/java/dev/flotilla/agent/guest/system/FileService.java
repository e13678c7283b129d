package dev.flotilla.agent.guest.system;

import dev.flotilla.agent.guest.AgentError;
import dev.flotilla.agent.guest.process.TenantRoot;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.ReadFileRequest;
import dev.flotilla.agent.protocol.v1.ReadFileResponse;
import dev.flotilla.agent.protocol.v1.WriteFileRequest;
import dev.flotilla.agent.protocol.v1.WriteFileResponse;
import com.google.protobuf.ByteString;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.HashSet;
import java.util.Set;

/** WriteFile and ReadFile: one chunk per call, at an offset, so any size fits under the frame limit. */
public final class FileService {

  private final int chunkCap;
  private final TenantRoot root;

  public FileService(int chunkCap) {
    this(chunkCap, null);
  }

  /** @param root the tenant's root when the agent runs outside it: paths are the tenant's, resolved in it */
  public FileService(int chunkCap, TenantRoot root) {
    this.chunkCap = chunkCap;
    this.root = root;
  }

  public WriteFileResponse write(WriteFileRequest r) {
    Path path = absolute(r.getPath());
    try {
      if (r.getCreateParents() && path.getParent() != null) Files.createDirectories(path.getParent());
      boolean created = !Files.exists(path);
      EnumSet<StandardOpenOption> opts = EnumSet.of(StandardOpenOption.WRITE, StandardOpenOption.CREATE);
      if (r.getTruncate()) opts.add(StandardOpenOption.TRUNCATE_EXISTING);
      try (FileChannel ch = FileChannel.open(path, opts)) {
        if (created) Files.setPosixFilePermissions(path, permissions(r.getMode() == 0 ? 0644 : r.getMode()));
        ByteBuffer data = r.getData().asReadOnlyByteBuffer();
        long pos = offset(r.getOffset());
        while (data.hasRemaining()) pos += ch.write(data, pos);
        return WriteFileResponse.newBuilder().setSize(ch.size()).build();
      }
    } catch (IOException e) {
      throw map("write", path, e);
    }
  }

  public ReadFileResponse read(ReadFileRequest r) {
    Path path = absolute(r.getPath());
    offset(r.getOffset());
    int length = r.getLength() == 0 ? chunkCap : Math.min(r.getLength(), chunkCap);
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
      long size = ch.size();
      ByteBuffer buf = ByteBuffer.allocate((int) Math.max(0, Math.min(length, size - r.getOffset())));
      long pos = r.getOffset();
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
      throw map("read", path, e);
    }
  }

  private Path absolute(String p) {
    if (root != null) return root.resolve(p);
    if (p.isEmpty() || !p.startsWith("/")) throw AgentError.invalid("path '" + p + "' must be absolute");
    if (p.indexOf('\0') >= 0) throw AgentError.invalid("path '" + p.replace('\0', '?') + "' contains NUL");
    return Path.of(p);
  }

  /** A uint64 offset past 2^63 arrives negative: no file is that large. */
  private static long offset(long offset) {
    if (offset < 0) throw AgentError.invalid("offset " + Long.toUnsignedString(offset) + " is past any file size");
    return offset;
  }

  private static AgentError map(String op, Path path, IOException e) {
    if (e instanceof NoSuchFileException) return AgentError.notFound("cannot " + op + " " + path + ": no such file or directory");
    if (e instanceof AccessDeniedException) {
      return new AgentError(Error.Code.PERMISSION_DENIED, "cannot " + op + " " + path + ": permission denied");
    }
    if (e instanceof FileSystemException fse && fse.getReason() != null) {
      return AgentError.invalid("cannot " + op + " " + path + ": " + fse.getReason());
    }
    return new AgentError(Error.Code.INTERNAL, "cannot " + op + " " + path + ": " + e);
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
