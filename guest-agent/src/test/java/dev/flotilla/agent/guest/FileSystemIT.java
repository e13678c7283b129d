package dev.flotilla.agent.guest;

import static dev.flotilla.agent.guest.Calls.failure;
import static dev.flotilla.agent.guest.Calls.get;
import static dev.flotilla.agent.guest.TestAgent.DEADLINE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentException.Code;
import dev.flotilla.agent.protocol.client.DirListing;
import dev.flotilla.agent.protocol.client.DirWatch;
import dev.flotilla.agent.protocol.client.FileEntry;
import dev.flotilla.agent.protocol.client.FsEvent;
import dev.flotilla.agent.protocol.client.WatchListener;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.stream.Stream;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The file system API of a real agent whose tenant's root is a directory of this host (as in a
 * microVM, {@code --tenant-root}): every call, its errors, and escapes through {@code ..} and
 * links, each checked against the host's files next to the root.
 */
class FileSystemIT {

  private TestAgent agent;
  private AgentClient client;
  private Path root;
  /** Host files next to the tenant's root that no call may touch. */
  private Path outside;
  private Path secret;

  @BeforeEach
  void start() throws Exception {
    root = Files.createTempDirectory("flotilla-fs-root");
    outside = Files.createTempDirectory("flotilla-fs-outside");
    secret = Files.writeString(outside.resolve("secret.txt"), "host secret");
    Files.createDirectories(outside.resolve("dir/sub"));
    Files.writeString(outside.resolve("dir/sub/keep.txt"), "keep");
    agent = TestAgent.startWithArgs(List.of("--tenant-root", root.toString(), "--nsenter", "/usr/bin/nsenter"),
        "sbx-fs", 1);
    client = agent.handshaken();
  }

  @AfterEach
  void stop() throws Exception {
    try {
      agent.close();
    } finally {
      delete(root);
      delete(outside);
    }
  }

  @Test
  void makeDirStatListRenameRemove() throws Exception {
    FileEntry made = get(client.makeDir("/a/b/c", true, 0700, DEADLINE));
    assertEquals(FileEntry.Type.DIR, made.type());
    assertEquals("/a/b/c", made.path());
    assertEquals(0700, made.mode());
    assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(root.resolve("a/b/c"))));
    get(client.makeDir("/a/b/c", true, 0, DEADLINE)); // mkdir -p of an existing directory
    get(client.writeFile("/a/f.txt", new ByteArrayInputStream("hello".getBytes()), 0640, DEADLINE));
    Files.createSymbolicLink(root.resolve("a/link"), Path.of("/etc/passwd"));

    FileEntry f = get(client.stat("/a/b/../f.txt", false, DEADLINE));
    assertEquals(new FileEntry("f.txt", "/a/f.txt", FileEntry.Type.FILE, 5, 0640, f.modified(), ""), f);
    FileEntry link = get(client.stat("/a/link", false, DEADLINE));
    assertEquals(FileEntry.Type.SYMLINK, link.type());
    assertEquals("/etc/passwd", link.symlinkTarget());
    failure(Code.NOT_FOUND, client.stat("/a/link", true, DEADLINE)); // the tenant's /etc/passwd: none in this root

    DirListing all = get(client.listDir("/a", 3, 0, "", DEADLINE));
    assertEquals("/a", all.path());
    assertEquals(List.of("b", "b/c", "f.txt", "link"), paths(all));
    assertFalse(all.truncated());
    assertEquals(List.of("b", "f.txt", "link"), paths(get(client.listDir("/a", 1, 0, "", DEADLINE))));
    // Pages of two, then of one (a page that ends at a directory goes on with its entries),
    // each after the last entry of the one before.
    for (int size : new int[] {2, 1}) {
      List<String> paged = new ArrayList<>();
      String after = "";
      for (int i = 0; i < 6; i++) {
        DirListing page = get(client.listDir("/a", 3, size, after, DEADLINE));
        paged.addAll(paths(page));
        if (page.nextStartAfter().isEmpty()) break;
        after = page.nextStartAfter().get();
      }
      assertEquals(paths(all), paged, "pages of " + size);
    }

    get(client.rename("/a/f.txt", "/a/b/g.txt", false, DEADLINE));
    assertEquals("hello", Files.readString(root.resolve("a/b/g.txt")));
    get(client.writeFile("/a/other", new ByteArrayInputStream("x".getBytes()), 0, DEADLINE));
    failure(Code.ALREADY_EXISTS, client.rename("/a/other", "/a/b/g.txt", false, DEADLINE));
    get(client.rename("/a/other", "/a/b/g.txt", true, DEADLINE));
    assertEquals("x", Files.readString(root.resolve("a/b/g.txt")));

    failure(Code.FAILED_PRECONDITION, client.remove("/a/b", false, DEADLINE));
    assertEquals(3, get(client.remove("/a/b", true, DEADLINE))); // b, b/c, b/g.txt
    assertFalse(Files.exists(root.resolve("a/b")));
  }

  @Test
  void errorsSayWhatIsWrong() throws Exception {
    Files.writeString(root.resolve("file"), "x");
    Files.createDirectories(root.resolve("dir"));
    assertTrue(failure(Code.NOT_FOUND, client.stat("/missing", false, DEADLINE)).getMessage()
        .contains("/missing: no such file or directory"));
    assertTrue(failure(Code.FAILED_PRECONDITION, client.listDir("/file", 1, 0, "", DEADLINE)).getMessage()
        .contains("not a directory"));
    failure(Code.FAILED_PRECONDITION, client.makeDir("/file/sub", true, 0, DEADLINE));
    assertTrue(failure(Code.ALREADY_EXISTS, client.makeDir("/dir", false, 0, DEADLINE)).getMessage()
        .contains("/dir: already exists"));
    failure(Code.NOT_FOUND, client.makeDir("/nope/sub", false, 0, DEADLINE));
    failure(Code.NOT_FOUND, client.remove("/missing", false, DEADLINE));
    failure(Code.NOT_FOUND, client.rename("/missing", "/x", false, DEADLINE));
    failure(Code.INVALID_ARGUMENT, client.remove("/", true, DEADLINE));
    failure(Code.INVALID_ARGUMENT, client.stat("relative", false, DEADLINE));
    failure(Code.INVALID_ARGUMENT, client.listDir("/dir", 1, 0, "../x", DEADLINE));
    String message = failure(Code.NOT_FOUND, client.stat("/missing", false, DEADLINE)).getMessage();
    assertFalse(message.contains(root.toString()), "the agent's own paths stay out of answers: " + message);
  }

  @Test
  void nothingEscapesTheRoot() throws Exception {
    Path rel = root.relativize(outside); // ../flotilla-fs-outside...: out of the root, relatively
    Files.createSymbolicLink(root.resolve("abs"), outside);                   // absolute link out
    Files.createSymbolicLink(root.resolve("rel"), Path.of("..").resolve(rel)); // relative link out
    Files.createSymbolicLink(root.resolve("secretlink"), secret);             // a link to a host file
    String outsideName = outside.getFileName().toString();

    // `..` stops at the root: this names /<outside name>/secret.txt inside the root, which is not there.
    failure(Code.NOT_FOUND, client.readFile("/../../.." + outside + "/secret.txt", new ByteArrayOutputStream(), DEADLINE));
    failure(Code.NOT_FOUND, client.stat("/../" + outsideName + "/secret.txt", true, DEADLINE));
    failure(Code.NOT_FOUND, client.listDir("/abs", 1, 0, "", DEADLINE));
    failure(Code.NOT_FOUND, client.listDir("/rel", 1, 0, "", DEADLINE));
    failure(Code.NOT_FOUND, client.readFile("/secretlink", new ByteArrayOutputStream(), DEADLINE));
    failure(Code.NOT_FOUND, client.stat("/abs/secret.txt", false, DEADLINE));

    // Writes through links land inside the root, where the link's target names the tenant's path.
    get(client.writeFile("/abs/secret.txt", new ByteArrayInputStream("tenant".getBytes()), 0, DEADLINE));
    assertEquals("tenant", Files.readString(root.resolve(outside.toString().substring(1)).resolve("secret.txt")));
    get(client.writeFile("/secretlink", new ByteArrayInputStream("tenant".getBytes()), 0, DEADLINE));
    get(client.makeDir("/rel/made", true, 0, DEADLINE));
    assertTrue(Files.isDirectory(root.resolve(outsideName).resolve("made")));

    // A symlinked parent directory.
    Files.createDirectories(root.resolve("p"));
    Files.createSymbolicLink(root.resolve("p/parent"), outside.resolve("dir"));
    failure(Code.NOT_FOUND, client.remove("/p/parent/sub", true, DEADLINE));
    failure(Code.NOT_FOUND, client.rename("/p/parent/sub/keep.txt", "/stolen.txt", false, DEADLINE));

    // Remove through a link removes the link, never its target.
    assertEquals(1, get(client.remove("/abs", true, DEADLINE)));
    assertFalse(Files.exists(root.resolve("abs"), LinkOption.NOFOLLOW_LINKS));
    get(client.remove("/secretlink", false, DEADLINE));

    // Rename onto a link replaces the link; out of the root via a link it stays inside.
    Files.createSymbolicLink(root.resolve("onto"), secret);
    Files.writeString(root.resolve("mine.txt"), "mine");
    get(client.rename("/mine.txt", "/onto", true, DEADLINE));
    assertEquals("mine", Files.readString(root.resolve("onto")));
    assertFalse(Files.isSymbolicLink(root.resolve("onto")));
    Files.writeString(root.resolve("mine2.txt"), "mine2");
    get(client.rename("/mine2.txt", "/rel/moved.txt", false, DEADLINE));
    assertTrue(Files.exists(root.resolve(outsideName).resolve("moved.txt")));
    failure(Code.INVALID_ARGUMENT, client.rename("/", "/x", false, DEADLINE));

    // Listing and recursive removal never enter a link.
    Files.createDirectories(root.resolve("tree"));
    Files.createSymbolicLink(root.resolve("tree/out"), outside.resolve("dir"));
    assertEquals(List.of("out"), paths(get(client.listDir("/tree", 5, 0, "", DEADLINE))));
    get(client.remove("/tree", true, DEADLINE));

    assertEquals("host secret", Files.readString(secret));
    assertEquals("keep", Files.readString(outside.resolve("dir/sub/keep.txt")));
    try (Stream<Path> s = Files.list(outside)) {
      assertEquals(List.of("dir", "secret.txt"), s.map(p -> p.getFileName().toString()).sorted().toList());
    }
  }

  @Test
  void aWatchSeesChangesUntilCancelled() throws Exception {
    Files.createDirectories(root.resolve("w/sub"));
    List<FsEvent> events = new CopyOnWriteArrayList<>();
    WatchListener listener = events::addAll;
    DirWatch watch = get(client.watchDir("/w", true, listener, DEADLINE));
    assertEquals("/w", watch.path());
    assertEquals(2, watch.watchedDirs());

    Files.writeString(root.resolve("w/new.txt"), "1");
    Files.writeString(root.resolve("w/sub/deep.txt"), "1");
    Awaitility.await().atMost(DEADLINE).until(() -> events.contains(new FsEvent(FsEvent.Kind.CREATED, "new.txt", 0))
        && events.contains(new FsEvent(FsEvent.Kind.CREATED, "sub/deep.txt", 0)));
    Files.writeString(root.resolve("w/new.txt"), "2");
    Awaitility.await().atMost(DEADLINE).until(() -> events.contains(new FsEvent(FsEvent.Kind.MODIFIED, "new.txt", 0)));
    Files.delete(root.resolve("w/new.txt"));
    Awaitility.await().atMost(DEADLINE).until(() -> events.contains(new FsEvent(FsEvent.Kind.DELETED, "new.txt", 0)));
    // A directory made later is watched too.
    Files.createDirectories(root.resolve("w/later"));
    Awaitility.await().atMost(DEADLINE).until(() -> events.contains(new FsEvent(FsEvent.Kind.CREATED, "later", 0)));
    Files.writeString(root.resolve("w/later/x"), "1");
    Awaitility.await().atMost(DEADLINE).until(() -> events.contains(new FsEvent(FsEvent.Kind.CREATED, "later/x", 0)));

    get(watch.cancel(DEADLINE));
    assertEquals("cancelled", get(watch.ended()));
    // The same directory again: the cancelled watch reports nothing more.
    List<FsEvent> again = new CopyOnWriteArrayList<>();
    DirWatch second = get(client.watchDir("/w", false, again::addAll, DEADLINE));
    int seen = events.size();
    Files.writeString(root.resolve("w/after.txt"), "1");
    Awaitility.await().atMost(DEADLINE).until(() -> again.contains(new FsEvent(FsEvent.Kind.CREATED, "after.txt", 0)));
    assertEquals(seen, events.size(), "the cancelled watch reported after its end: " + events);
    get(second.cancel(DEADLINE));
  }

  @Test
  void watchesAreBoundedPerConnectionAndEndWithTheirDirectory() throws Exception {
    Files.createDirectories(root.resolve("many"));
    List<DirWatch> running = new ArrayList<>();
    for (int i = 0; i < AgentSession.MAX_WATCHES; i++) {
      running.add(get(client.watchDir("/many", false, e -> { }, DEADLINE)));
    }
    failure(Code.RESOURCE_EXHAUSTED, client.watchDir("/many", false, e -> { }, DEADLINE));
    get(running.remove(0).cancel(DEADLINE));
    running.add(get(client.watchDir("/many", false, e -> { }, DEADLINE))); // a cancelled watch frees its slot
    for (DirWatch w : running) get(w.cancel(DEADLINE));

    failure(Code.NOT_FOUND, client.watchDir("/missing", false, e -> { }, DEADLINE));
    Files.writeString(root.resolve("plain"), "x");
    failure(Code.FAILED_PRECONDITION, client.watchDir("/plain", false, e -> { }, DEADLINE));

    Files.createDirectories(root.resolve("going"));
    DirWatch gone = get(client.watchDir("/going", false, e -> { }, DEADLINE));
    Files.delete(root.resolve("going"));
    assertTrue(get(gone.ended()).contains("/going is gone"));
  }

  private static List<String> paths(DirListing l) {
    return l.entries().stream().map(FileEntry::path).toList();
  }

  private static void delete(Path dir) throws Exception {
    if (!Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) return;
    try (Stream<Path> s = Files.walk(dir)) {
      s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}
