package dev.flotilla.cli;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.Timestamp;
import dev.flotilla.api.v1.FileEvent;
import dev.flotilla.api.v1.FileEventKind;
import dev.flotilla.api.v1.FileInfo;
import dev.flotilla.api.v1.FileType;
import dev.flotilla.api.v1.ListDirRequest;
import dev.flotilla.api.v1.ListDirResponse;
import dev.flotilla.api.v1.MakeDirRequest;
import dev.flotilla.api.v1.ReadFileResponse;
import dev.flotilla.api.v1.RemoveRequest;
import dev.flotilla.api.v1.RemoveResponse;
import dev.flotilla.api.v1.RenameRequest;
import dev.flotilla.api.v1.RenameResponse;
import dev.flotilla.api.v1.WatchDirResponse;
import dev.flotilla.api.v1.WatchStarted;
import dev.flotilla.api.v1.WriteFileRequest;
import dev.flotilla.api.v1.WriteFileResponse;
import io.grpc.Status;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code flotilla fs ...} and {@code flotilla cp} against a fake SandboxService: the wire, the output, the exit codes. */
class FsCliAgainstFakeServerTest {
  static final String ID = "sb-00000000000000aa";
  @TempDir Path dir;
  private TestSandboxServer server;

  @AfterEach
  void stop() {
    if (server != null) server.close();
  }

  private TestCli cli() {
    return new TestCli(dir).env(CliContext.ENV_ENDPOINT, server.endpoint()).env(CliContext.ENV_TOKEN, "t0k");
  }

  private static FileInfo entry(String path, FileType type, long size, int mode) {
    return FileInfo.newBuilder().setName(path.substring(path.lastIndexOf('/') + 1)).setPath(path).setType(type)
        .setSize(size).setMode(mode).setModified(Timestamp.newBuilder().setSeconds(1_700_000_000)).build();
  }

  @Test
  void ls_follows_every_page_and_prints_names_long_lines_and_json() {
    List<FileInfo> all = List.of(entry("a", FileType.FILE_TYPE_DIR, 4096, 0755), entry("a/f.txt", FileType.FILE_TYPE_FILE, 5, 0640),
        entry("a/link", FileType.FILE_TYPE_SYMLINK, 7, 0777).toBuilder().setSymlinkTarget("f.txt").build(),
        entry("odd\nname", FileType.FILE_TYPE_FILE, 0, 0600));
    server = new TestSandboxServer().unary(SandboxServiceMethods.LIST_DIR, (ListDirRequest req) -> {
      int from = req.getPageToken().isEmpty() ? 0 : Integer.parseInt(req.getPageToken());
      int to = Math.min(all.size(), from + 2);
      return ListDirResponse.newBuilder().setPath(req.getPath()).addAllEntries(all.subList(from, to))
          .setNextPageToken(to < all.size() ? Integer.toString(to) : "").build();
    }).start();

    TestCli.Result r = cli().run("fs", "ls", ID, "/tmp", "-R");
    assertEquals(0, r.exitCode(), r.err());
    // a directory gets "/", a link its target; a newline in a name cannot forge a line
    assertEquals("a/\na/f.txt\na/link -> f.txt\nodd\\nname\n", r.out());
    ListDirRequest first = (ListDirRequest) server.requests.get(0);
    assertEquals(ID, first.getSandboxId());
    assertEquals(FsCommands.MAX_DEPTH, first.getDepth());
    assertEquals(List.of("", "2"), server.requests.stream().map(q -> ((ListDirRequest) q).getPageToken()).toList());

    TestCli.Result depth = cli().run("fs", "ls", ID, "/tmp", "--depth", "2", "-l");
    assertEquals(0, depth.exitCode(), depth.err());
    assertEquals(2, ((ListDirRequest) server.requests.get(2)).getDepth());
    assertTrue(depth.out().startsWith("drwxr-xr-x         4096 2023-11-14T22:13:20Z a/\n-rw-r-----            5 "), depth.out());

    TestCli.Result json = cli().run("fs", "ls", ID, "/tmp", "-o", "json");
    assertEquals(1, ((ListDirRequest) server.requests.get(4)).getDepth());
    assertTrue(json.out().startsWith("[\n  {\"name\": \"a\", \"path\": \"a\", \"type\": \"dir\", \"size\": 4096, \"mode\": \"0755\", "
        + "\"modified\": \"2023-11-14T22:13:20Z\", \"symlinkTarget\": \"\"},\n"), json.out());
    assertTrue(json.out().contains("\"path\": \"odd\\nname\""), json.out());
  }

  @Test
  void usage_errors_send_nothing() {
    server = new TestSandboxServer().start();
    assertEquals(2, cli().run("fs", "ls", ID, "tmp").exitCode());
    assertEquals(2, cli().run("fs", "ls", ID, "/tmp", "--depth", "17").exitCode());
    assertEquals(2, cli().run("fs", "mkdir", ID, "/tmp/x", "--mode", "999").exitCode());
    assertEquals(2, cli().run("fs", "mv", ID, "/a").exitCode());
    assertEquals(2, cli().run("fs").exitCode());
    assertEquals(2, cli().run("cp", "a", "b").exitCode(), "no side in a sandbox");
    assertEquals(2, cli().run("cp", ID + ":/a", ID + ":/b").exitCode(), "both sides in a sandbox");
    assertEquals(2, cli().run("cp", ID + ":tmp/a", "b").exitCode(), "a relative path in the sandbox");
    TestCli.Result dirCopy = cli().run("cp", dir.toString(), ID + ":/tmp/");
    assertEquals(2, dirCopy.exitCode());
    assertTrue(dirCopy.err().contains("is a directory"), dirCopy.err());
    assertTrue(server.requests.isEmpty());
  }

  @Test
  void mkdir_rm_and_mv_send_their_flags_and_a_refused_path_does_not_stop_the_others() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.MAKE_DIR, (MakeDirRequest req) -> entry(req.getPath(), FileType.FILE_TYPE_DIR, 0, 0750))
        .unary(SandboxServiceMethods.REMOVE, (RemoveRequest req) -> {
          if (req.getPath().equals("/missing")) {
            throw Status.NOT_FOUND.withDescription("cannot remove /missing: no such file or directory").asRuntimeException();
          }
          return RemoveResponse.newBuilder().setRemoved(1).build();
        })
        .unary(SandboxServiceMethods.RENAME, (RenameRequest req) -> {
          if (!req.getOverwrite()) throw Status.ALREADY_EXISTS.withDescription("cannot rename: /b already exists").asRuntimeException();
          return RenameResponse.getDefaultInstance();
        })
        .start();

    TestCli.Result mkdir = cli().run("fs", "mkdir", ID, "-p", "--mode", "750", "/a/b", "/c");
    assertEquals(0, mkdir.exitCode(), mkdir.err());
    assertEquals("", mkdir.out());
    MakeDirRequest made = (MakeDirRequest) server.requests.get(0);
    assertTrue(made.getParents());
    assertEquals(0750, made.getMode());
    assertEquals("/c", ((MakeDirRequest) server.requests.get(1)).getPath());

    TestCli.Result rm = cli().run("fs", "rm", ID, "-r", "/missing", "/there");
    assertEquals(1, rm.exitCode());
    assertEquals("flotilla: cannot remove /missing: no such file or directory\n", rm.err(), "the file, not the sandbox, is missing");
    assertEquals("/there", ((RemoveRequest) server.requests.get(3)).getPath());
    assertTrue(((RemoveRequest) server.requests.get(3)).getRecursive());

    TestCli.Result refused = cli().run("fs", "mv", ID, "/a", "/b");
    assertEquals(1, refused.exitCode());
    assertTrue(refused.err().startsWith("flotilla: already exists: "), refused.err());
    assertEquals(0, cli().run("fs", "mv", ID, "-f", "/a", "/b").exitCode());
  }

  @Test
  void watch_prints_one_line_per_change_and_says_on_stderr_when_it_runs() {
    server = new TestSandboxServer().streaming(SandboxServiceMethods.WATCH_DIR, (req, out) -> {
      out.onNext(WatchDirResponse.newBuilder().setStarted(WatchStarted.newBuilder().setPath("/tmp").setWatchedDirs(3)).build());
      for (FileEventKind k : List.of(FileEventKind.FILE_CREATED, FileEventKind.FILE_MODIFIED, FileEventKind.FILE_DELETED)) {
        out.onNext(WatchDirResponse.newBuilder().setEvent(FileEvent.newBuilder().setKind(k).setPath("sub/f")).build());
      }
      out.onNext(WatchDirResponse.newBuilder().setEvent(FileEvent.newBuilder().setKind(FileEventKind.FILE_EVENTS_LOST).setDropped(12)).build());
      out.onCompleted(); // the directory went
    }).start();

    TestCli.Result r = cli().run("fs", "watch", ID, "/tmp", "-r");
    assertEquals(0, r.exitCode(), r.err());
    assertEquals("created sub/f\nmodified sub/f\ndeleted sub/f\nlost 12 events\n", r.out());
    assertEquals("watching /tmp (3 directories)\n", r.err());
    assertTrue(((dev.flotilla.api.v1.WatchDirRequest) server.requests.get(0)).getRecursive());
  }

  @Test
  void watch_ends_like_sigpipe_when_its_reader_goes() {
    server = new TestSandboxServer().streaming(SandboxServiceMethods.WATCH_DIR, (req, out) -> {
      out.onNext(WatchDirResponse.newBuilder().setStarted(WatchStarted.newBuilder().setPath("/tmp")).build());
      out.onNext(WatchDirResponse.newBuilder().setEvent(FileEvent.newBuilder().setKind(FileEventKind.FILE_CREATED).setPath("f")).build());
    }).start();
    CompletableFuture<TestCli.Result> r = CompletableFuture.supplyAsync(() -> cli().stdoutClosed().run("fs", "watch", ID, "/tmp"));
    await().atMost(java.time.Duration.ofSeconds(20)).until(r::isDone);
    assertEquals(ExitCodes.BROKEN_PIPE, r.join().exitCode());
  }

  @Test
  void cp_uploads_a_file_in_chunks_with_its_mode_and_keeps_its_name_under_a_slash() throws Exception {
    byte[] data = new byte[3 * 1024 * 1024 + 5];
    new Random(3).nextBytes(data);
    Path src = dir.resolve("data.bin");
    Files.write(src, data);
    Files.setPosixFilePermissions(src, java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-x---"));
    java.io.ByteArrayOutputStream got = new java.io.ByteArrayOutputStream();
    server = new TestSandboxServer().clientStreaming(SandboxServiceMethods.WRITE_FILE, (List<WriteFileRequest> reqs) -> {
      reqs.stream().skip(1).forEach(q -> got.writeBytes(q.getData().toByteArray()));
      return WriteFileResponse.newBuilder().setSize(got.size()).build();
    }).start();

    TestCli.Result r = cli().run("cp", src.toString(), ID + ":/tmp/in/");
    assertEquals(0, r.exitCode(), r.err());
    assertEquals("", r.out());
    assertEquals("", r.err(), "no progress: small, and stderr is no terminal");
    WriteFileRequest header = (WriteFileRequest) server.requests.get(0);
    assertEquals(ID, header.getHeader().getSandboxId());
    assertEquals("/tmp/in/data.bin", header.getHeader().getPath());
    assertEquals(0750, header.getHeader().getMode());
    assertEquals(5, server.requests.size(), "the header and 1 MiB chunks");
    assertArrayEquals(data, got.toByteArray());
    assertTrue(server.deadlines.get(0).isPresent(), "a transfer has a deadline (1h unless --timeout)");
  }

  @Test
  void cp_downloads_into_a_directory_and_shows_progress_only_when_asked() throws Exception {
    byte[] data = new byte[Upload.PROGRESS_FROM > Integer.MAX_VALUE ? 0 : (int) Upload.PROGRESS_FROM + 100];
    new Random(5).nextBytes(data);
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.STAT, req -> entry("/tmp/big.bin", FileType.FILE_TYPE_FILE, data.length, 0644))
        .streaming(SandboxServiceMethods.READ_FILE, (req, out) -> {
          for (int off = 0; off < data.length; off += 1 << 20) {
            out.onNext(ReadFileResponse.newBuilder().setData(ByteString.copyFrom(data, off, Math.min(1 << 20, data.length - off))).build());
          }
          out.onCompleted();
        }).start();

    TestCli.Result quiet = cli().run("cp", ID + ":/tmp/big.bin", dir.toString());
    assertEquals(0, quiet.exitCode(), quiet.err());
    assertEquals("", quiet.err());
    assertArrayEquals(data, Files.readAllBytes(dir.resolve("big.bin")));
    assertEquals(1, server.requests.size(), "no Stat when no progress is shown");

    Path named = dir.resolve("copy.bin");
    TestCli.Result loud = cli().run("cp", "--progress", ID + ":/tmp/big.bin", named.toString());
    assertEquals(0, loud.exitCode(), loud.err());
    assertArrayEquals(data, Files.readAllBytes(named));
    List<String> lines = loud.err().lines().toList();
    assertTrue(lines.size() >= 2 && lines.stream().allMatch(l -> l.startsWith("copying big.bin: ")), loud.err());
    assertTrue(lines.get(lines.size() - 1).endsWith("(100%)"), loud.err());
    try (var left = Files.list(dir)) {
      assertTrue(left.noneMatch(p -> p.getFileName().toString().endsWith(".flotilla-part")));
    }
  }

  @Test
  void a_failed_download_leaves_the_old_file_and_no_partial_one() throws Exception {
    Path target = dir.resolve("keep.txt");
    Files.writeString(target, "old");
    server = new TestSandboxServer().streaming(SandboxServiceMethods.READ_FILE, (req, out) -> {
      out.onNext(ReadFileResponse.newBuilder().setData(ByteString.copyFromUtf8("half")).build());
      out.onError(Status.UNAVAILABLE.withDescription("the guest agent is not connected").asRuntimeException());
    }).start();

    TestCli.Result r = cli().run("cp", ID + ":/tmp/f", target.toString());
    assertEquals(ExitCodes.UNAVAILABLE, r.exitCode(), r.err());
    assertEquals("old", Files.readString(target));
    try (var left = Files.list(dir)) {
      assertEquals(List.of(target), left.toList());
    }
  }
}
