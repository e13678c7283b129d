package dev.flotilla.vm.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetAddress;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.xbill.DNS.AAAARecord;
import org.xbill.DNS.ARecord;
import org.xbill.DNS.CNAMERecord;
import org.xbill.DNS.DClass;
import org.xbill.DNS.Flags;
import org.xbill.DNS.Message;
import org.xbill.DNS.Name;
import org.xbill.DNS.Opcode;
import org.xbill.DNS.Rcode;
import org.xbill.DNS.Record;
import org.xbill.DNS.Section;
import org.xbill.DNS.Type;

class DnsMessagesTest {

  static Name n(String s) throws Exception {
    return Name.fromString(s.endsWith(".") ? s : s + ".");
  }

  static Message query(String name, int type) throws Exception {
    return Message.newQuery(Record.newRecord(n(name), type, DClass.IN));
  }

  static DnsMessages.Query parsed(String name) throws Exception {
    return DnsMessages.parseQuery(query(name, Type.A).toWire());
  }

  /** An upstream answer to {@code q} under {@code id} with these answer records. */
  static byte[] answer(DnsMessages.Query q, int id, Record... records) {
    Message m = new Message(id);
    m.getHeader().setFlag(Flags.QR);
    m.addRecord(q.message().getQuestion(), Section.QUESTION);
    for (Record r : records) m.addRecord(r, Section.ANSWER);
    return m.toWire();
  }

  static ARecord a(String name, String address, long ttl) throws Exception {
    return new ARecord(n(name), DClass.IN, ttl, InetAddress.getByName(address));
  }

  @Test
  void aTruncatedQueryWhoseHeaderCountsAMissingQuestionIsAFormatError() throws Exception {
    // found by DnsMessagesFuzzTest: dnsjava stops at a truncated message's end, and the question
    // it counts is not there (the proxy's loop used to stop on the NullPointerException)
    byte[] wire = {0x1a, 0x00, 0x02, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x10, (byte) 0x80};
    var r = assertThrows(DnsMessages.Rejected.class, () -> DnsMessages.parseQuery(wire));
    assertEquals(Rcode.FORMERR, r.rcode);
    Message reply = new Message(DnsMessages.error(r.query, r.rcode));
    assertEquals(0x1a00, reply.getHeader().getID());
    assertEquals(Rcode.FORMERR, reply.getRcode());
  }

  @Test
  void aPlainQueryIsAcceptedWithItsNameInLowerCase() throws Exception {
    DnsMessages.Query q = parsed("API.Flotilla.TEST");
    assertEquals("api.flotilla.test", q.name());
    assertEquals(Type.A, q.type());
  }

  @Test
  void malformedAndUnwantedQueriesAreRejectedWithTheRightCode() throws Exception {
    // not even a header: dropped (no query to answer)
    assertNull(assertThrows(DnsMessages.Rejected.class, () -> DnsMessages.parseQuery(new byte[5])).query);
    // a header, then garbage: FORMERR under its id
    Message cutQuery = query("a.test", Type.A);
    byte[] cut = Arrays.copyOf(cutQuery.toWire(), 15);
    DnsMessages.Rejected r = assertThrows(DnsMessages.Rejected.class, () -> DnsMessages.parseQuery(cut));
    assertEquals(Rcode.FORMERR, r.rcode);
    Message err = new Message(DnsMessages.error(r.query, Rcode.FORMERR));
    assertEquals(Rcode.FORMERR, err.getRcode());
    assertEquals(cutQuery.getHeader().getID(), err.getHeader().getID());
    assertTrue(err.getHeader().getFlag(Flags.QR));
    // a compression pointer to itself in the question
    byte[] loop = {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, (byte) 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01};
    assertEquals(Rcode.FORMERR, assertThrows(DnsMessages.Rejected.class, () -> DnsMessages.parseQuery(loop)).rcode);
    // a response is never answered (no reflection loops)
    Message resp = query("a.test", Type.A);
    resp.getHeader().setFlag(Flags.QR);
    assertNull(assertThrows(DnsMessages.Rejected.class, () -> DnsMessages.parseQuery(resp.toWire())).query);
    Message update = query("a.test", Type.A);
    update.getHeader().setOpcode(Opcode.UPDATE);
    assertEquals(Rcode.NOTIMP, assertThrows(DnsMessages.Rejected.class, () -> DnsMessages.parseQuery(update.toWire())).rcode);
    assertEquals(Rcode.REFUSED, assertThrows(DnsMessages.Rejected.class, () -> DnsMessages.parseQuery(query("a.test", Type.AXFR).toWire())).rcode);
    Message chaos = Message.newQuery(Record.newRecord(n("version.bind"), Type.TXT, DClass.CH));
    assertEquals(Rcode.REFUSED, assertThrows(DnsMessages.Rejected.class, () -> DnsMessages.parseQuery(chaos.toWire())).rcode);
    Message two = query("a.test", Type.A);
    two.addRecord(Record.newRecord(n("b.test"), Type.A, DClass.IN), Section.QUESTION);
    assertEquals(Rcode.FORMERR, assertThrows(DnsMessages.Rejected.class, () -> DnsMessages.parseQuery(two.toWire())).rcode);
    Message withAnswer = query("a.test", Type.A);
    withAnswer.addRecord(a("a.test", "192.0.2.1", 60), Section.ANSWER);
    assertEquals(Rcode.FORMERR, assertThrows(DnsMessages.Rejected.class, () -> DnsMessages.parseQuery(withAnswer.toWire())).rcode);
    // a well-formed refusal echoes the question
    DnsMessages.Rejected axfr = assertThrows(DnsMessages.Rejected.class, () -> DnsMessages.parseQuery(query("a.test", Type.AXFR).toWire()));
    assertEquals(n("a.test"), new Message(DnsMessages.error(axfr.query, axfr.rcode)).getQuestion().getName());
  }

  @Test
  void theForwardedQueryCarriesTheNodesIdAndTheAnswerGoesBackUnderTheSandboxs() throws Exception {
    DnsMessages.Query q = parsed("a.test");
    Message up = new Message(DnsMessages.upstream(q, 4242));
    assertEquals(4242, up.getHeader().getID());
    assertEquals(q.message().getQuestion(), up.getQuestion());
    byte[] back = DnsMessages.withId(answer(q, 4242, a("a.test", "192.0.2.1", 60)), q.id());
    assertEquals(q.id(), new Message(back).getHeader().getID());
  }

  @Test
  void anAnswerGrantsTheQuestionsChainOnlyWithTheSmallestTtl() throws Exception {
    DnsMessages.Query q = parsed("api.test");
    byte[] wire = answer(q, 7,
        new CNAMERecord(n("api.test"), DClass.IN, 300, n("edge.cdn.test")),
        a("edge.cdn.test", "192.0.2.10", 120),
        new AAAARecord(n("edge.cdn.test"), DClass.IN, 200, InetAddress.getByName("2001:db8::10")),
        // about other names: an attacker's server may add them; never granted
        a("bank.test", "198.51.100.66", 9999),
        a("api.other.test", "198.51.100.67", 9999));
    DnsMessages.Answer r = DnsMessages.parseAnswer(q, 7, wire);
    assertEquals(List.of(InetAddress.getByName("192.0.2.10"), InetAddress.getByName("2001:db8::10")), r.addresses());
    assertEquals(120, r.ttlSeconds());
  }

  @Test
  void recordsOutsideTheAnswerSectionAreNeverGranted() throws Exception {
    DnsMessages.Query q = parsed("api.test");
    Message m = new Message(7);
    m.getHeader().setFlag(Flags.QR);
    m.addRecord(q.message().getQuestion(), Section.QUESTION);
    m.addRecord(a("api.test", "192.0.2.99", 60), Section.ADDITIONAL);
    assertTrue(DnsMessages.parseAnswer(q, 7, m.toWire()).addresses().isEmpty());
  }

  @Test
  void aCnameLoopEndsAndAnswersToAnotherQuestionOrIdAreNotAnswers() throws Exception {
    DnsMessages.Query q = parsed("x.test");
    byte[] loop = answer(q, 9, new CNAMERecord(n("x.test"), DClass.IN, 60, n("y.test")),
        new CNAMERecord(n("y.test"), DClass.IN, 60, n("x.test")));
    assertTrue(DnsMessages.parseAnswer(q, 9, loop).addresses().isEmpty());
    // a chain longer than MAX_CNAME_HOPS grants nothing past it
    Record[] chain = new Record[DnsMessages.MAX_CNAME_HOPS + 3];
    for (int i = 0; i < chain.length - 1; i++) {
      chain[i] = new CNAMERecord(n(i == 0 ? "x.test" : "c" + i + ".test"), DClass.IN, 60, n("c" + (i + 1) + ".test"));
    }
    chain[chain.length - 1] = a("c" + (chain.length - 1) + ".test", "192.0.2.5", 60);
    assertTrue(DnsMessages.parseAnswer(q, 9, answer(q, 9, chain)).addresses().isEmpty());
    assertThrows(IOException.class, () -> DnsMessages.parseAnswer(q, 10, answer(q, 9, a("x.test", "192.0.2.1", 60))));
    DnsMessages.Query other = parsed("y.test");
    assertThrows(IOException.class, () -> DnsMessages.parseAnswer(q, 9, answer(other, 9, a("x.test", "192.0.2.1", 60))));
    assertThrows(IOException.class, () -> DnsMessages.parseAnswer(q, 9, new byte[] {0, 9, (byte) 0x81, (byte) 0x80, 0, 1}));
  }

  @Test
  void anErrorOrATruncatedAnswerGrantsNothing() throws Exception {
    DnsMessages.Query q = parsed("x.test");
    Message nx = new Message(answer(q, 3, a("x.test", "192.0.2.1", 60)));
    nx.getHeader().setRcode(Rcode.NXDOMAIN);
    DnsMessages.Answer r = DnsMessages.parseAnswer(q, 3, nx.toWire());
    assertEquals(Rcode.NXDOMAIN, r.rcode());
    assertTrue(r.addresses().isEmpty());
    Message tc = new Message(answer(q, 3, a("x.test", "192.0.2.1", 60)));
    tc.getHeader().setFlag(Flags.TC);
    assertTrue(DnsMessages.parseAnswer(q, 3, tc.toWire()).truncated());
    assertTrue(DnsMessages.parseAnswer(q, 3, tc.toWire()).addresses().isEmpty());
  }
}
