"""The shipped category list for the harmful-content step: English regexes, matched lower-cased.

Most patterns need a request ("how do I", "steps to", "help me", or an imperative at the start
of a sentence: "Write ...") followed by a making/doing verb and, within three words, a harmful
object. So "the history of the atomic bomb", "how to spot a phishing email", "make a bath bomb"
and "kill a child process" do not match while "how to build a pipe bomb" does.
Edit with care: tests/clean/test_harmful.py checks a hit and a near miss per category.
"""

from __future__ import annotations

# A request for instructions or a stated intent, within the same sentence as what follows.
INTENT = (
    r"(?:how (?:to|do i|do you|can i|could i|would i|should i)|steps? (?:to|for)|"
    r"instructions? (?:to|for|on)|guide (?:to|for|on)|tutorial (?:on|for)|recipe for|"
    r"teach me|show me|help me|explain how to|tell me how to|i want to|i need to|"
    r"give me|best way to|easiest way to|can you|could you)"
)
_GAP = r"[^.?!\n]{0,60}?"
_FEW = r"(?:[\w'-]+\s+){0,3}?"  # up to three words between a verb and its object
_NOT_TECH = r"(?!\s+(?:process|processes|thread|threads|task|tasks|job|jobs|node|nodes))"
_NOT_DEFENCE = (
    r"(?!\s+(?:awareness|detection|detector|protection|defen[cs]e|scanner|analysis|removal|"
    r"prevention|training|simulation))"
)


Rule = tuple[str | None, str]
"""(trigger, pattern): the pattern is only tried on texts where the trigger regex matches; the
trigger is the rare part of the pattern (its objects or its verbs), so most texts cost one
cheap scan instead of the backtracking of the request phrase."""


def ask(verbs: str, objects: str, tail: str = "", *, trigger: str = "objects") -> Rule:
    """A request, then one of `verbs`, then (within three words) one of `objects`."""
    request = rf"(?:{INTENT}{_GAP}|(?:^|[.?!:\n]\s*)(?:please\s+)?)"
    pattern = rf"{request}\b(?:{verbs})\s+{_FEW}(?:{objects})\b{tail}"
    return (rf"\b(?:{objects if trigger == 'objects' else verbs})", pattern)


def plain(pattern: str) -> Rule:
    """A pattern that starts with its own rare words: it is its own trigger."""
    return (None, pattern)


CATEGORIES: dict[str, tuple[Rule, ...]] = {
    "weapons": (
        ask(
            r"make|build|assemble|construct|synthesi[sz]e|produce|3d[- ]print",
            r"(?<!bath )(?<!seed )(?<!photo )(?:bombs?|explosives?|ieds?|pipe bombs?|"
            r"molotov(?: cocktail)?s?|napalm|detonators?|nerve agents?|sarin|vx|ricin|anthrax|"
            r"bioweapons?|chemical weapons?|ghost guns?|untraceable (?:gun|firearm)s?|"
            r"(?:gun|firearm|pistol|rifle) silencers?)",
        ),
        # a home-made or hidden gun: "build a gun at home without anyone knowing"
        ask(
            r"make|build|assemble|3d[- ]print",
            r"(?:a |an )?(?:guns?|firearms?|pistols?|rifles?)",
            r"(?=[^.?!\n]{0,40}\b(?:at home|without (?:a licen[cs]e|anyone|a serial)|untraceable|unregistered))",
            trigger="verbs",
        ),
    ),
    "drugs": (
        ask(
            r"make|cook|synthesi[sz]e|manufacture|produce|extract",
            r"meth|methamphetamine|crystal meth|fentanyl|heroin|cocaine|crack cocaine|lsd|mdma|ghb",
        ),
    ),
    "cyber": (
        ask(
            r"write|create|build|code|develop|make|program|deploy|spread",
            r"ransomware|keyloggers?|malware|trojans?|botnets?|rootkits?|spyware|"
            r"computer virus(?:es)?|credential stealers?",
            _NOT_DEFENCE,
        ),
        # "get into someone else's email without their password"
        plain(
            r"\b(?:get into|access|log ?in(?:to)?|open|read)\s+(?:someone|somebody|my (?:ex|boss|"
            r"neighbou?r|wife|husband|partner))(?: else)?'?s\s+(?:\w+\s+)?(?:email|account|inbox|"
            r"phone|messages)\b[^.?!\n]{0,30}\bwithout\b"
        ),
        ask(
            r"hack into|break into",
            r"someone|somebody|my (?:ex|boss|neighbou?r)|(?:an?|their|his|her|someone's) "
            r"(?:account|email|phone|bank)",
            trigger="verbs",
        ),
        ask(
            r"steal",
            r"passwords?|credentials|credit cards?|identit(?:y|ies)|bank details",
            trigger="verbs",
        ),
        ask(r"launch|run|perform|do", r"ddos|dos attack|denial[- ]of[- ]service"),
    ),
    "violence": (
        ask(
            r"kill|murder|poison|strangle|stab|kidnap|torture|assault|hurt",
            r"a (?:person|child|kid|man|woman)|someone|somebody|people|him|her|them|"
            r"my (?:wife|husband|partner|boss|neighbou?r|father|mother|dad|mom|teacher|ex)",
            _NOT_TECH,
            trigger="verbs",
        ),
        plain(r"\bget away with (?:murder|killing)\b"),
        plain(
            r"\bpoisons? that (?:can'?t|cannot|won'?t) be (?:traced|detected)\b|\buntraceable poisons?\b"
        ),
        plain(
            r"\bspike (?:someone|somebody|a (?:girl|guy|woman|man)|her|his|their)(?:'s)? drinks?\b"
        ),
        plain(
            r"\b(?:start|set)\s+(?:a\s+)?fires?\s+(?:that|which)\s+(?:looks?|would look)\s+like\s+"
            r"an\s+accident\b|\bmake\s+(?:a|the)\s+fire\s+look\s+like\s+an\s+accident\b"
        ),
        plain(r"\b(?:hide|dispose of|get rid of) (?:a|the) (?:dead )?body\b"),
    ),
    "self_harm": (
        plain(
            r"\b(?:kill myself|end my (?:own )?life|commit suicide|suicide methods?|"
            r"ways to (?:die|self[- ]harm)|cut myself|hang myself)\b"
        ),
    ),
    "sexual_minors": (
        plain(r"\bchild (?:porn|pornography|sexual abuse material)\b|\bcsam\b"),
        plain(
            r"\b(?:nude|naked|explicit|erotic|sexy)\s+" + _FEW + r"(?:photos?|pictures?|images?|"
            r"videos?|stor(?:y|ies)|content)\s+(?:of|with|involving|featuring)\s+(?:a\s+)?"
            r"(?:minors?|underage|children|child|kids?|\d{1,2}[- ]year[- ]olds?)\b"
        ),
        plain(
            r"\b(?:sex|sexual (?:acts?|content|roleplay)) with (?:a )?(?:minors?|children|child|"
            r"kids?|underage)\b"
        ),
    ),
    "fraud": (
        ask(
            r"write|create|make|craft|draft|design|send|build|print|produce",
            r"phishing (?:email|page|site|kit|message)s?|credit card skimmers?|"
            r"counterfeit (?:money|bills|currency|cash)|fake (?:ids?|passports?|"
            r"driver'?s licen[cs]es?)|forged (?:documents?|checks?|cheques?)",
        ),
        ask(r"launder", r"money|cash|proceeds", trigger="verbs"),
        ask(
            r"scam|defraud",
            r"the elderly|elderly|old people|vulnerable|people|someone",
            trigger="verbs",
        ),
    ),
    "hate": (
        (
            r"\b(?:should|must|deserve to)\s+(?:die|be (?:killed|exterminated|gassed|wiped out))",
            r"\b(?:all|every)\s+(?:[a-z]+\s+)?(?:people|men|women|immigrants|refugees|jews|"
            r"muslims|christians|blacks|whites|gays|foreigners)\b[^.?!\n]{0,20}"
            r"(?:should|must|deserve to)\s+(?:die|be (?:killed|exterminated|gassed|wiped out))",
        ),
        plain(r"\bethnic cleansing of\b"),
    ),
}
