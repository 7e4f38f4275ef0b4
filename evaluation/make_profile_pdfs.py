"""Writes the PDFs of the evaluation profiles: ``uv run python -m evaluation.make_profile_pdfs``.

Real applicants send PDFs made by word processors: numbered section headings in a larger
font ("1. 누리커머스 — 데이터 엔지니어"), paragraphs wrapped over lines. These are made with
reportlab so that they can be rebuilt and changed; the generated files are committed, since
the evaluation reads the profile folders as the service would. Korean text uses a CJK font
every PDF reader knows (HYSMyeongJo-Medium, not embedded), so no font file is needed.
"""

from __future__ import annotations

from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

PROFILES = Path(__file__).with_name("profiles")
FONT = "HYSMyeongJo-Medium"

CERTIFICATES = (
    "Certificates and Awards",
    [
        (
            "1. AWS Certified Solutions Architect – Professional",
            [
                "Issued by Amazon Web Services in May 2022. The certification is valid "
                "until May 2025 and covers multi-account architecture, migrations and cost "
                "control."
            ],
        ),
        (
            "2. Certified Kubernetes Administrator (CKA)",
            ["Issued by the Linux Foundation in November 2023."],
        ),
        (
            "3. Engineer Information Processing",
            [
                "Korean national IT certificate (Information Processing Engineer), obtained "
                "in 2016 while at university."
            ],
        ),
        (
            "4. Engineering Excellence Award, Hanbit Logistics",
            [
                "Awarded in December 2023 for the dispatch latency work, chosen by the "
                "engineering leadership among 120 engineers."
            ],
        ),
        ("5. TOEIC", ["Score of 945 out of 990, taken in March 2024."]),
    ],
)

CAREER = (
    "경력기술서",
    [
        (
            "1. 누리커머스 — 데이터 엔지니어 (2020.03 ~ 현재)",
            [
                "주문과 상품 데이터를 BigQuery로 적재하는 일 배치 파이프라인을 담당하고 "
                "있습니다. Airflow DAG를 재설계하여 일 배치 처리 시간을 4시간에서 40분으로 "
                "단축했습니다.",
                "데이터 웨어하우스를 사내 Hadoop 클러스터에서 BigQuery로 이관하면서 인프라 "
                "비용을 연간 35% 절감했습니다.",
                "데이터 엔지니어 3명으로 구성된 데이터 플랫폼 파트를 이끌며 분기별 로드맵과 "
                "코드 리뷰 규칙을 정했습니다.",
            ],
        ),
        (
            "2. 새봄핀테크 — 데이터 분석가 (2017.01 ~ 2020.02)",
            [
                "고객 이탈 예측 모델을 만들고 마케팅팀과 함께 리텐션 캠페인을 운영하여 "
                "이탈률을 18% 낮췄습니다.",
                "경영진이 매주 보는 핵심 지표 대시보드를 Tableau로 구축했습니다.",
            ],
        ),
        (
            "3. 이직 사유",
            [
                "누리커머스에서 파이프라인을 안정화한 뒤, 데이터 플랫폼을 처음부터 설계할 수 "
                "있는 더 큰 조직에서 일하고 싶어 이직을 준비하고 있습니다.",
            ],
        ),
    ],
)

PROJECTS = (
    "Selected Projects",
    [
        (
            "1. Video call handover (Parang Health, 2023)",
            [
                "Video consultations dropped when patients moved between Wi-Fi and LTE. I added "
                "network handover with WebRTC ICE restarts, and dropped calls fell from 4.1% "
                "to 1.3% of all consultations."
            ],
        ),
        (
            "2. Accessibility overhaul (Parang Health, 2024)",
            [
                "I made the booking flow fully usable with VoiceOver and Dynamic Type, together "
                "with two designers. The app received the Korean web accessibility "
                "certification (WA mark) in June 2024."
            ],
        ),
        (
            "3. Driver offline mode (Gureum Mobility, 2021)",
            [
                "Trips are recorded on the phone with Room and synchronised when the network "
                "returns. Lost trip records fell from about 300 a week to fewer than 5."
            ],
        ),
        (
            "4. Talks and awards",
            [
                'Talk: "Swift Concurrency in Production", iOS Dev Korea conference, 2023. '
                'Award: Parang Health "Ship It" award for the accessibility work, 2024.'
            ],
        ),
    ],
)

DOCUMENTS = {
    PROFILES / "jaehyun_oh" / "documents" / "certificates.pdf": CERTIFICATES,
    PROFILES / "yujin_han" / "documents" / "경력기술서.pdf": CAREER,
    PROFILES / "minho_lee" / "documents" / "portfolio.pdf": PROJECTS,
}


def write(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> None:
    """A one-column PDF: a title, then numbered sections in a larger font, each with its
    paragraphs (reportlab wraps them over lines)."""
    pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    styles = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=styles["BodyText"], fontName=FONT, fontSize=10)
    heading = ParagraphStyle("heading", parent=styles["Heading2"], fontName=FONT, fontSize=13)
    top = ParagraphStyle("title", parent=styles["Title"], fontName=FONT, fontSize=18)
    story: list[object] = [Paragraph(title, top), Spacer(1, 6)]
    for section, paragraphs in sections:
        story.append(Paragraph(section, heading))
        story.extend(Paragraph(text, body) for text in paragraphs)
    document = SimpleDocTemplate(str(path), pagesize=A4, title=title, invariant=True)
    document.build(story)


def main() -> None:
    for path, (title, sections) in DOCUMENTS.items():
        write(path, title, sections)
        print(f"wrote {path.relative_to(PROFILES.parent.parent)}")


if __name__ == "__main__":
    main()
