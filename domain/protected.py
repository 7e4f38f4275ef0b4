"""Protected characteristics: the questions no engine answers, and how they are recognised.

A recruiter may not ask about a candidate's age, marital status, family plans, appearance,
origin, race, property, religion, health, sex or politics, nor about the family's schooling,
jobs and wealth (Korea's 채용절차의 공정화에 관한 법률 art. 4-3, the US EEOC's protected
categories; the taxonomy below names each category's source). Every engine declines these
questions before any model or search sees them, and the whole conversation is screened, not
only the last message (``application/ask.py``).

Rules, no model: the text is normalised first (NFKC, zero-width characters and soft hyphens
removed, confusable letters folded, letters spaced or dotted apart joined, leetspeak folded in
words that mix letters and digits), then split into clauses; a clause matches a category when
one of its rules matches, unless the clause is about something the applicant built (an
age-verification feature, a church's website, accessibility for users with disabilities).
English rules are matched on the clause, Korean ones on the clause with every space and
symbol removed, so "결 혼 했 나 요" reads as "결혼했나요". See docs/hiring-safety.md for the
measured rates and how to add a rule or an example.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from domain.policy import Language

KOREA_ART_4_3 = "채용절차의 공정화에 관한 법률 제4조의3"
KOREA_AGE_ACT = "고용상 연령차별금지 및 고령자고용촉진에 관한 법률 제4조의4"
KOREA_HUMAN_RIGHTS = "국가인권위원회법 제2조제3호"
EEOC = "US EEOC (Title VII, ADEA, ADA, GINA, PDA)"


@dataclass(frozen=True, slots=True)
class ProtectedCategory:
    """One protected characteristic: what it covers, why, and what may be asked instead."""

    id: str
    name: dict[Language, str]
    reason: str
    sources: tuple[str, ...]
    ask_instead: dict[Language, str]


TAXONOMY: tuple[ProtectedCategory, ...] = (
    ProtectedCategory(
        "age",
        {"en": "age", "ko": "나이"},
        "Age says nothing about the ability to do the job; seniority is measured in experience.",
        (EEOC + ": age (ADEA)", KOREA_AGE_ACT),
        {"en": "her years of experience and seniority", "ko": "경력 연차(몇 년 차)와 직급"},
    ),
    ProtectedCategory(
        "marital_status",
        {"en": "marital status", "ko": "결혼 여부"},
        "Marital status and relationships are private and unrelated to the work.",
        (KOREA_ART_4_3 + " (혼인여부)", EEOC + ": sex"),
        {
            "en": "her availability, working hours and willingness to travel or relocate",
            "ko": "근무 가능 시간, 출장·이주 가능 여부",
        },
    ),
    ProtectedCategory(
        "family_and_pregnancy",
        {"en": "children, pregnancy and family plans", "ko": "자녀·임신·가족 계획"},
        "Pregnancy and caring for a family are protected; they must not weigh on hiring.",
        (EEOC + ": sex, pregnancy (PDA)", "남녀고용평등과 일·가정 양립 지원에 관한 법률 제7조"),
        {
            "en": "her start date, working hours, on-call and travel availability",
            "ko": "입사 가능일, 근무 시간, 온콜·출장 가능 여부",
        },
    ),
    ProtectedCategory(
        "family_members",
        {"en": "family members", "ko": "가족 구성원"},
        "The education, jobs and wealth of a candidate's family may not be asked for.",
        (KOREA_ART_4_3 + " (직계 존비속·형제자매의 학력·직업·재산)",),
        {"en": "her own education and experience", "ko": "지원자 본인의 학력과 경력"},
    ),
    ProtectedCategory(
        "appearance",
        {"en": "appearance, height and weight", "ko": "용모·키·체중"},
        "Looks, height and weight are not job requirements for this role.",
        (KOREA_ART_4_3 + " (용모·키·체중)", EEOC + ": sex, race, disability"),
        {"en": "her skills, projects and work style", "ko": "기술, 프로젝트, 일하는 방식"},
    ),
    ProtectedCategory(
        "origin",
        {"en": "birthplace and origin", "ko": "출신 지역·출생지"},
        "Where a candidate was born or comes from is no measure of their work.",
        (KOREA_ART_4_3 + " (출신지역)", EEOC + ": national origin"),
        {
            "en": "her work authorization, visa sponsorship, current location and languages",
            "ko": "취업 비자·근무 자격, 현재 거주지, 사용 언어",
        },
    ),
    ProtectedCategory(
        "race_ethnicity",
        {"en": "race and ethnicity", "ko": "인종·민족"},
        "Race, colour and ethnicity are protected in every hiring decision.",
        (EEOC + ": race, colour, national origin", KOREA_HUMAN_RIGHTS),
        {"en": "her skills, languages and experience", "ko": "기술, 사용 언어, 경력"},
    ),
    ProtectedCategory(
        "property",
        {"en": "property and finances", "ko": "재산"},
        "A candidate's property, savings and debts are private.",
        (KOREA_ART_4_3 + " (재산)",),
        {
            "en": "her salary expectations, if the applicant shares them",
            "ko": "희망 처우(지원자가 공개한 경우)",
        },
    ),
    ProtectedCategory(
        "religion",
        {"en": "religion", "ko": "종교"},
        "Religion and belief are protected.",
        (EEOC + ": religion", KOREA_HUMAN_RIGHTS),
        {
            "en": "her availability for the working schedule, weekends included",
            "ko": "주말 등 근무 일정 가능 여부",
        },
    ),
    ProtectedCategory(
        "health_disability",
        {"en": "health, disability and genetic information", "ko": "건강·장애·유전 정보"},
        "Health, disability and genetic information are protected and private.",
        (EEOC + ": disability (ADA), genetic information (GINA)", KOREA_HUMAN_RIGHTS),
        {
            "en": "whether she can start on time and work the role's schedule",
            "ko": "입사 가능일과 근무 일정 가능 여부",
        },
    ),
    ProtectedCategory(
        "sex_gender",
        {"en": "sex, gender identity and sexual orientation", "ko": "성별·성 정체성·성적 지향"},
        "Sex, gender identity and sexual orientation are protected.",
        (EEOC + ": sex (sexual orientation and gender identity)", KOREA_HUMAN_RIGHTS),
        {"en": "her skills and experience", "ko": "기술과 경력"},
    ),
    ProtectedCategory(
        "politics",
        {"en": "political views", "ko": "정치 성향"},
        "Political opinions and affiliations are private and unrelated to the work.",
        (KOREA_HUMAN_RIGHTS + " (정치적 의견)",),
        {"en": "her experience and how she works with a team", "ko": "경력과 협업 방식"},
    ),
)
CATEGORIES: dict[str, ProtectedCategory] = {category.id: category for category in TAXONOMY}

# --- normalisation ---------------------------------------------------------------------------

# Letters from other scripts that look like Latin ones, as used to slip a word past a filter.
_CONFUSABLES = str.maketrans(
    "аеорсхуіјѕԁһкмтвнАЕОРСХУІЈЅКМТВНαοερτυικνΑΟΕΡΤΥΙΚΝΒΜ",
    "aeopcxyijsdhkmtbhaeopcxyijskmtbhaoeptuiknaoeptyiknbm",
)
_LEET = str.maketrans("013457@$", "oieastas")
_INVISIBLE = re.compile(
    r"[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f"
    r"\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)
_MIXED_TOKEN = re.compile(r"\b(?=\w*[a-z])(?=\w*[0-9@$])[\w@$]+")
# Letters spaced or dotted apart: "m a r r i e d", "s.i.n.g.l.e", "결.혼", "결 혼 했 나 요".
_SPACED_LETTERS = re.compile(r"\b[a-z](?:(?: {1,3}|[.\-_*·/]) ?[a-z]\b){2,}")
_HANGUL_SEPARATOR = re.compile(r"(?<=[가-힣])[.\-_*·~/]+(?=[가-힣])")
_SPACED_SYLLABLES = re.compile(r"(?<![가-힣])[가-힣](?: [가-힣](?![가-힣])){1,}")


def normalize(text: str) -> str:
    """``text`` as the rules read it: NFKC, lower case, invisible characters removed,
    confusable and leetspeak letters folded, spaced-apart letters joined."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = text.translate(_CONFUSABLES).casefold()
    text = _MIXED_TOKEN.sub(lambda m: m.group().translate(_LEET), text)
    text = _SPACED_LETTERS.sub(lambda m: re.sub(r"[^a-z]", "", m.group()), text)
    text = _HANGUL_SEPARATOR.sub("", text)
    text = _SPACED_SYLLABLES.sub(lambda m: m.group().replace(" ", ""), text)
    return re.sub(r"\s+", " ", text).strip()


_CLAUSE_BREAK = re.compile(r"[.?!;,\n]+|\b(?:and|also|plus|btw|or)\b|그리고|그리고요|또한")
_NOT_WORD = re.compile(r"[\W_]+")


def clauses(normalized: str) -> list[str]:
    """The clauses of a normalised question: a mixed question's parts are screened alone."""
    return [part.strip() for part in _CLAUSE_BREAK.split(normalized) if part.strip()]


# --- rules -----------------------------------------------------------------------------------

_PERSON = r"(?:she|he|they|the (?:candidate|applicant)|[a-z]+(?:-[a-z]+)?)"

# Per category: (patterns over the English clause, patterns over the squashed clause).
_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "origin": (
        (
            rf"\bwhere (?:was|were) {_PERSON} born\b",
            r"\bborn in (?:korea|another country|this country|the us|america|china|japan)\b",
            r"\bhome ?town\b",
            rf"\bwhere (?:is|are|was) {_PERSON} (?:originally )?from\b",
            r"\boriginally from\b",
            rf"\bwhere did {_PERSON} grow up\b",
            r"\b(?:grow|grew) up in\b",
            r"\b(?:national|ethnic|regional) origin\b",
            r"\bnationality\b",
            r"\bimmigrant\b|\bimmigrated\b",
            rf"\bis {_PERSON} (?:a )?native (?:korean|american|citizen)\b",
            r"\b(?:country|region|province) (?:is|was|does) (?:her|his|their) family\b",
            r"\bfamily (?:is )?from\b",
        ),
        (
            r"hometown",  # English stems
            r"고향",
            r"출신(?!학교|대학|회사)",
            r"태어난(곳|데|지역|도시|나라)",
            r"어디서태어",
            r"어디서자랐",
            # Not "해 본 적이 있나요" (have you ever): the commonest way to ask about experience.
            r"본적(?!(?:이|은|도|조차)?(?:있|없|있나|없나))",
            r"토박이",
            r"(전라|경상|충청|강원|제주|전남|전북|경남|경북|충남|충북)도?(사람|출신)",
            r"조선족",
            r"탈북",
            r"출생지",
        ),
    ),
    "age": (
        (
            r"\bhow old\b(?! (?:is|was|are) (?:the|this|that|our|their|his|her) (?:\w+ )?"
            r"(?:codebase|code|platform|system|service|project|company|app|product|stack|"
            r"technology|tech|repo\w*|software|database|library|framework)s?\b)",
            r"\bages?\b(?! (?:verification|gate|check|rating|restriction|limit|group)s?\b)"
            r"(?! of (?:the|this|that|our|a|an|their|his|her) (?:\w+ )?(?:codebase|code|"
            r"platform|system|service|project|company|app|product|stack|software|data)s?\b)",
            r"\bborn\b(?! to\b)",
            r"\bbirth ?(?:day|date|year)s?\b",
            r"\b(?:date|year)s? of birth\b",
            r"\bdob\b",
            r"\b(?:millennial|gen ?[xyz]|boomer|zoomer)s?\b",
            r"\b(?:early|mid|late) (?:20|30|40|50|60)s\b",
            r"\b(?:in )?(?:her|his|their) (?:20|30|40|50|60)s\b",
            r"\b(?:twenties|thirties|forties|fifties|sixties)\b",
            r"\b(?:over|under|above|below|older than|younger than) \d\d\b",
            r"\b(?:older|younger) than\b",
            r"\b(?:youngest|oldest) (?:on|in|one|person|member)\b",
            r"\btoo (?:old|young)\b",
            r"\bretir(?:e|es|ed|ing|ement)\b",
            r"\bdigital native\b",
            r"\bhigh school\b",
            r"\bbefore (?:smartphones|the internet)\b",
        ),
        (
            r"나이(?!키|스)",
            r"몇살",
            r"몇세",
            r"연세",
            r"연령(?!인증|제한|확인|등급)",
            r"생년",
            r"출생(연도|년도|년)",
            r"년생",
            r"생일",
            r"만\d+세",
            r"학번",
            r"무슨띠|띠가|띠는|띠예|띠에요",
            r"\d0대(초반|중반|후반|인|이|야|예|세|예요|에요|죠|맞)",
            r"\d0년대생",
            r"mz세대|[xyz]세대|세대인가",
            r"어린가|어려요|어린편|젊은가|젊어요|늙|나이들|동안인",
            r"정년",
            r"(고등학교|중학교|고교)[^가-힣]*\S*졸업",
        ),
    ),
    "marital_status": (
        (
            r"\bmarri(?:ed|age)\b(?! to (?:a|any|the|one|this|that) (?:particular |specific )?"
            r"(?:framework|language|stack|tool|technology|approach|idea|vendor)\b)",
            r"\bmarital\b",
            r"\b(?:divorced?|divorcee|widow(?:ed|er)?|fianc[ée]e?|spouse|husband|wife|wives)\b",
            r"\b(?:boy|girl) ?friend\b",
            r"\bsignificant other\b",
            r"\bmaiden name\b",
            r"\bwedding(?: ring)?\b",
            r"\bmrs\b",
            rf"\b(?:is|are|was|still) {_PERSON} (?:single|engaged|dating)\b",
            r"\b(?:got|getting|get) (?:engaged|hitched)\b",
            r"\bmarried or single\b|\bsingle or married\b",
            r"\bin a relationship\b",
            r"\b(?:lives?|living) with (?:a|her|his|their) partner\b",
        ),
        (
            r"marital",  # English stems
            r"결혼(?!정보)",
            r"기혼",
            r"미혼",
            r"유부[녀남]",
            r"싱글(?!맘|대디|톤|페이지|사인)",
            r"솔로",
            r"이혼",
            r"돌싱",
            r"배우자",
            r"남편",
            r"아내",
            r"와이프",
            r"애인",
            r"(남|여)자?친구",
            r"(남|여)친",
            r"약혼",
            r"신혼",
            r"혼인",
            r"사귀는",
            r"연애",
        ),
    ),
    "family_and_pregnancy": (
        (
            r"\bpregnan\w*",
            r"\b(?:maternity|paternity|parental|family) leave\b",
            r"\bmaternity\b|\bpaternity\b",
            r"\b(?:kids?|children|babies|baby|newborn|toddlers?|little ones|daughters?|sons?)\b",
            r"\bchild\b(?! ?(?:components?|process(?:es)?|nodes?|elements?|threads?|tables?|"
            r"class(?:es)?|safety|pornography|accounts?|theme|widgets?|routes?|objects?)\b)",
            r"\bchildcare\b|\bchild care\b|\bdaycare\b|\bnanny\b",
            r"\bschool (?:pick ?ups?|runs?|drop ?offs?)\b",
            r"\bstart(?:ing)? a family\b",
            r"\bfamily planning\b|\bfamily plans\b",
            r"\bplans? (?:for|to have) (?:a )?family\b",
            r"\b(?:working|stay at home|stay-at-home|single) "
            r"(?:mom|mum|mother|dad|father|parent)\b",
            r"\bexpecting (?:a )?(?:child|baby)\b",
            r"\b(?:elderly|aging|ageing|sick) parents\b",
            r"\bcare (?:for|of) (?:her|his|their) (?:parents|mother|father|family)\b",
        ),
        (
            r"pregnan|maternity|paternity",  # English stems
            r"임신",
            r"출산",
            r"육아",
            r"자녀",
            r"자식(?!프로세스|노드|요소|컴포넌트)",
            r"아이(?!디|템|콘|폰|패드|티|피|오에스|돌|스|언|유|엠)",
            # Not 장애 (an outage, or a disability: health's rule): "장애가 나면 …".
            r"(?<!장)애(가|는|들|를|키|기|랑|도)(?!자일|플|니|매|초|정|착|로)",
            r"아기",
            r"둘째|첫째|셋째",
            r"워킹맘|싱글맘|싱글대디|워킹대디",
            r"어린이집|유치원|하원|등원",
            r"부양",
            r"가족계획",
        ),
    ),
    "family_members": (
        (
            r"\b(?:her|his|their) (?:parents?|father|mother|dad|mom|mum|brothers?|sisters?|"
            r"siblings?|family|relatives)\b(?! (?:plan|tree)\b)",
            r"\bfamily (?:wealthy|rich|background|income|wealth)\b",
            r"\bis (?:her|his|their) family\b",
        ),
        (
            r"아버지|어머니|아빠|엄마|부모(?!프로세스|노드|요소|컴포넌트|클래스)",
            r"형제|자매|남매",
            r"집안",
            r"(?<![가-힣]{2})(형|오빠|언니|누나|동생)(은|이|는|의|분)",
            r"가족(?!요금|계획|친화|같은)",
        ),
    ),
    "appearance": (
        (
            r"\bhow tall\b",
            r"\b(?:height|weight|weigh|weighs)\b",
            rf"\bwhat does {_PERSON} look like\b",
            r"\b(?:attractive|pretty|good ?looking|good-looking|handsome|beautiful|ugly|"
            r"overweight|fat|slim|skinny|obese|cute|hot)\b",
            r"\btattoo(?:s|ed)?\b",
            r"\bappearance\b|\blooks\b",
            r"\bphoto of (?:her|his|their)\b|\b(?:her|his|their) (?:face|body|figure)\b",
        ),
        (
            r"키(가|는|도|랑)?(몇|큰|작|얼마|어떻|알려)",
            r"키랑|키와",
            r"몸무게",
            r"체중",
            r"체격",
            r"외모",
            r"예쁜|예뻐|이뻐|잘생|못생",
            r"뚱뚱|날씬|마른",
            r"인상이",
            r"얼굴",
            r"문신|타투",
            r"용모",
        ),
    ),
    "race_ethnicity": (
        (
            r"\brac(?:e|ial)\b(?! ?conditions?\b)",
            r"\bethnic\w*",
            r"\bskin (?:colou?r|tone)\b",
            r"\bmixed race\b|\bbiracial\b",
            rf"\bis {_PERSON} (?:asian|white|black|hispanic|latin[oa]|caucasian|african|"
            r"chinese|korean|japanese|indian|arab)\b",
        ),
        (
            r"ethnicit",  # English stems
            r"인종",
            r"혼혈",
            r"피부색",
            r"민족",
            r"흑인|백인|황인",
            r"다문화",
            r"순수(한국|혈통)",
            r"외국인처럼",
        ),
    ),
    "property": (
        (
            r"\b(?:own|owns|owned) (?:a |an |his |her |their )?(?:house|home|apartment|flat|"
            r"car|property|land|condo)\b",
            r"\bor rent\b|\brenting\b",
            r"\bnet worth\b",
            r"\bin debt\b|\bdebts?\b|\bmortgage\b|\bcredit score\b|\bsavings\b",
            r"\bmoney (?:does|do|did) (?:she|he|they) have\b",
            r"\bhow (?:wealthy|rich)\b|\b(?:wealthy|rich)\b",
            r"\bhave any property\b",
        ),
        (
            # Not the subject of a person noun ending in 자: 지원자가, 개발자가, 기여자가, 경력자가.
            r"(?<![원발여용리당임획영성계업술표학력험격직무입수청독])자가",
            r"재산",
            r"차있",
            r"자동차있",
            r"전세|월세",
            r"빚",
            r"모아둔돈|저축",
            r"부동산",
            r"주식",
            r"대출",
            r"잘사",
            r"부자",
        ),
    ),
    "religion": (
        (
            r"\breligio\w*",
            r"\b(?:christian|muslim|islam\w*|buddhis[mt]|catholic|protestant|jewish|judaism|"
            r"hindu\w*|atheist|agnostic|mormon|evangelical)s?\b",
            r"\b(?:church|mosque|synagogue|temple|ramadan|sabbath|worship)\b",
            r"\bpray(?:s|ing|er|ers)?\b",
            r"\bbelieve in god\b|\bgod\b",
            r"\bfaith\b",
        ),
        (
            r"religio",  # English stems
            r"종교(?!단체)",
            r"기독교|개신교|천주교|불교|이슬람|힌두|원불교",
            r"교회|성당|사찰|절에",
            r"신자",
            r"신앙",
            r"무교",
            r"예배|미사|기도",
            r"신천지|교인",
        ),
    ),
    "health_disability": (
        (
            r"\bdisabilit\w*|\bdisabled\b|\bhandicap\w*|\bwheelchair\b",
            r"\b(?:impairment|impaired|blind|deaf)\b",
            r"\b(?:illness|ill|sick|diseases?|diagnos\w*|medications?|medicine|medical|"
            r"hospitali[sz]\w*|surgery|surgeries|cancer|diabetes|depression|depressed|anxiety|"
            r"adhd|autism|autistic|bipolar|ptsd|chronic|genetic|therapy|therapist|"
            r"psychiatri\w*)\b",
            r"\bhealth\b(?! ?(?:checks?|endpoints?|probes?|insurance|care|tech|domain|"
            r"monitoring|dashboards?|metrics?|status pages?))",
            r"\bhealthy\b(?! (?:team|culture|code|codebase|review|habits? of code))",
            r"\bsick (?:days|leave)\b",
            r"\bheart (?:disease|condition)\b",
            r"\bin a wheelchair\b",
        ),
        (
            r"disabilit",  # English stems
            r"건강(?!한(팀|조직|문화|코드|개발|리뷰))",
            r"지병",
            r"병력",
            r"질병|질환",
            r"장애(인|가있|있|여부|등급(?!분류)|를가지|를가진)",
            r"아픈(곳|데)|아파|아프",
            r"우울",
            r"공황",
            r"약먹|복용",
            r"수술",
            r"정신과|정신질환|정신건강",
            r"디스크",
            r"병가",
            r"입원",
            r"유전(병|질환|자)",
            r"시력|청력|난청",
            r"암(이|에|투병|진단)",
            r"치료받",
        ),
    ),
    "sex_gender": (
        (
            r"\b(?:gay|lesbian|bisexual|transgender|trans|queer|lgbt\w*|homosexual|"
            r"heterosexual|sexuality|sexual orientation|gender)\b",
            r"\bsex\b",
            rf"\bis {_PERSON} straight\b",
            rf"\b(?:is|are|was) {_PERSON} (?:a )?(?:man|woman|male|female|boy|girl)\b",
            r"\b(?:a )?man or (?:a )?woman\b|\bmale or female\b",
            r"\bborn (?:a )?(?:man|woman|male|female)\b",
            r"\bidentify as\b",
        ),
        (
            r"transgender|lesbian|bisexual|sexualorientation",  # English stems
            r"동성애|이성애|양성애",
            r"성적지향|성정체성",
            r"트랜스젠더",
            r"게이|레즈비언|퀴어",
            r"성별",
            r"남자(예요|에요|인가|야|냐)|여자(예요|에요|인가|야|냐)",
        ),
    ),
    "politics": (
        (
            r"\bpolitic\w*",
            r"\bvot(?:e|es|ed|ing|er)\b",
            r"\b(?:liberal|conservative|left-wing|right-wing|leftist|democrat|republican)s?\b",
            r"\bfeminis[mt]\b",
            r"\bunion (?:movement|members?|membership|activit\w*)\b",
            r"\belection\b",
        ),
        (
            r"정당",
            r"정치",
            r"진보|보수",
            r"페미",
            r"노조|노동조합",
            r"찍었|투표",
            r"촛불|태극기집회",
            r"좌파|우파",
        ),
    ),
}

# A clause about something the applicant built or worked on ("Did he build age verification
# for the game store?", "결혼정보회사 플랫폼 개발 경험") names a protected word as a product
# feature, not as a question about the applicant.
_BUILT = re.compile(
    r"\b(?:buil[dt]\w*|worked on|work on|working on|design\w*|develop\w*|implement\w*|shipp?\w*|"
    r"handl\w*|experience with|maintain\w*|wrote|written|migrat\w*)\b"
)
_PRODUCT = re.compile(
    r"\b(?:platforms?|apps?|applications?|systems?|features?|modules?|products?|software|"
    r"filters?|forms?|stores?|clients?|marketplaces?|pipelines?|users?|customers?|"
    r"accessibility|verification|sites?|websites?|services?|tools?|api|pii|data|"
    r"claims|checks?|endpoints?|billing|venues?)\b"
)
_BUILT_KO = re.compile(r"개발|구현|만들|만든|설계|다뤄|다룬|다뤘|외주|구축|운영|작업")
_PRODUCT_KO = re.compile(
    r"시스템|플랫폼|앱|서비스|기능|홈페이지|웹사이트|도메인|솔루션|모듈|회사|체계|분류|"
    r"프로세스|데이터|파이프라인|개인정보|단체"
)


@dataclass(frozen=True, slots=True)
class _Compiled:
    category: str
    english: re.Pattern[str]
    squashed: re.Pattern[str]


@cache
def _any_category() -> _Compiled:
    """Every category's patterns in one: most questions match none, and this says so in
    two searches a clause instead of two a category."""
    return _Compiled(
        "any",
        re.compile("|".join(f"(?:{p})" for english, _ in _RULES.values() for p in english)),
        re.compile("|".join(f"(?:{p})" for _, squashed in _RULES.values() for p in squashed)),
    )


@cache
def _compiled() -> tuple[_Compiled, ...]:
    return tuple(
        _Compiled(
            category,
            re.compile("|".join(f"(?:{p})" for p in english)),
            re.compile("|".join(f"(?:{p})" for p in squashed)),
        )
        for category, (english, squashed) in _RULES.items()
    )


def _about_a_product(clause: str, squashed: str) -> bool:
    return bool(
        (_BUILT.search(clause) and _PRODUCT.search(clause))
        or (_BUILT_KO.search(squashed) and _PRODUCT_KO.search(squashed))
    )


def screen(text: str) -> ProtectedCategory | None:
    """The protected characteristic ``text`` asks about, or ``None``.

    A question with a legitimate part and a protected one is protected: it is declined
    whole (docs/hiring-safety.md, "Mixed questions").
    """
    for clause in clauses(normalize(text)):
        squashed = _NOT_WORD.sub("", clause)
        anything = _any_category()
        if not (anything.english.search(clause) or anything.squashed.search(squashed)):
            continue
        for rule in _compiled():
            if rule.english.search(clause) or rule.squashed.search(squashed):
                if _about_a_product(clause, squashed):
                    continue
                return CATEGORIES[rule.category]
    return None


# --- what is said instead -------------------------------------------------------------------


def decline_text(category: ProtectedCategory, language: Language) -> str:
    """The decline, in the recruiter's language, saying what may be asked instead."""
    if language == "ko":
        return (
            f"{category.name['ko']}와(과) 같은 개인적인 특성에 관한 질문에는 답변드리지 "
            "않습니다. 공정한 채용 판단과 관련이 없는 정보이며, 채용절차법 등 관련 법령이 묻지 "
            f"않도록 정하고 있습니다. 대신 {category.ask_instead['ko']}에 대해 물어보실 수 "
            "있습니다. 질문에 다른 내용이 함께 있었다면, 그 부분만 다시 물어봐 주세요."
        )
    return (
        f"I can't answer questions about personal characteristics such as "
        f"{category.name['en']}: they play no part in a fair hiring decision, and hiring laws "
        f"forbid asking about them. You may ask instead about {category.ask_instead['en']}. "
        "If your message also asked something else, please ask that part again on its own."
    )


DECLINE_TEXTS = frozenset(
    decline_text(category, language) for category in TAXONOMY for language in ("en", "ko")
)
"""Every decline the service writes: screening the history, these are not protected text."""

# "Answer my previous question", "answer it anyway", "아까 질문에 답해 줘": a question that
# only points back at the turn before.
_REFERS_BACK = re.compile(
    r"\b(?:previous|last|earlier|prior|above|my|that|the first|original) (?:question|one|"
    r"message)\b|\banswer (?:it|that|this|the question|me)\b|\b(?:anyway|regardless|"
    r"just (?:answer|tell))\b|\bwhy not\b|\bwhat about (?:it|that)\b|\btry again\b|"
    r"\bask(?:ed)? (?:before|earlier)\b"
)
_REFERS_BACK_KO = re.compile(
    r"(이전|아까|앞|방금|처음|위|원래|첫|그|내)질문|그냥(답|말|알려)|답해|대답해|알려(줘|주세요|달라)|"
    r"말해(줘|주세요)|왜안|다시"
)


def refers_back(question: str) -> bool:
    """Whether ``question`` points back at an earlier one ("answer my previous question")."""
    normalized = normalize(question)
    return bool(
        _REFERS_BACK.search(normalized) or _REFERS_BACK_KO.search(_NOT_WORD.sub("", normalized))
    )


@lru_cache(maxsize=4096)
def screen_message(text: str) -> ProtectedCategory | None:
    """:func:`screen` for any turn of a conversation: the service's own declines are safe.

    Remembered: a conversation's stored turns are screened again at every follow-up."""
    if text.strip() in DECLINE_TEXTS:
        return None
    return screen(text)


@dataclass(frozen=True, slots=True)
class ScreenedTurns:
    """A conversation's earlier turns with every protected one left out."""

    kept: tuple[tuple[str, str], ...]
    """The (question, answer) turns no protected text is in, oldest first."""
    latest_dropped: ProtectedCategory | None
    """The category of the latest turn, if it was left out."""


def screen_turns(turns: Sequence[tuple[str, str]]) -> ScreenedTurns:
    """Leave out every (question, answer) turn that asks or tells a protected characteristic.

    Whoever wrote the turn (the recruiter, a client that sends its own history, or this
    service), no engine and no search sees a protected question in any form: a turn that
    holds one is dropped whole, its answer with it.
    """
    kept: list[tuple[str, str]] = []
    latest: ProtectedCategory | None = None
    for question, answer in turns:
        latest = screen_message(question) or screen_message(answer)
        if latest is None:
            kept.append((question, answer))
    return ScreenedTurns(tuple(kept), latest)
