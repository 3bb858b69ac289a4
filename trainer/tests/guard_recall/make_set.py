#!/usr/bin/env python3
"""Writes labelled.tsv: synthetic sentences (Japanese and English clinical notes) with the identifier
kinds each holds, for trainer/tests/guard.rs. Every name, number and address is made up from the lists
below; the labels are known by construction. Kinds: phone, email, my_number, name, address; `-` for a
hard negative (lab values, dates, doses, ICD-10 and JLAC10 codes, lot numbers, role words).

    python3 trainer/tests/guard_recall/make_set.py > trainer/tests/guard_recall/labelled.tsv
"""
import random

rng = random.Random(20261122)

FAMILY = ["山田", "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "中村", "小林", "加藤", "吉田", "山本", "松本", "井上", "木村"]
GIVEN = ["太郎", "花子", "健一", "美咲", "翔太", "陽子", "大輔", "由美", "誠", "直樹", "恵子", "拓也"]
KANA = ["スミス", "ジョンソン", "ブラウン", "グエン", "キム"]
EN_FIRST = ["John", "Mary", "Robert", "Linda", "James", "Susan", "Michael", "Karen", "David", "Emily"]
EN_LAST = ["Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Anderson", "Taylor", "Moore"]
PREF = [("東京都", ["新宿区", "世田谷区", "八王子市"]), ("神奈川県", ["横浜市中区", "川崎市幸区"]), ("大阪府", ["大阪市北区", "堺市堺区"]),
        ("愛知県", ["名古屋市中区"]), ("福岡県", ["福岡市博多区"]), ("北海道", ["札幌市中央区"])]
TOWN = ["本町", "山下町", "西新宿", "栄", "天神", "大通西"]
STREETS = ["Main Street", "Oak Avenue", "Maple Rd", "Baker Street", "Elm St.", "Sunset Blvd", "W Lake Drive"]
FW = str.maketrans("0123456789-()", "０１２３４５６７８９－（）")


def digits(n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def my_number():
    while True:
        d = [rng.randrange(10) for _ in range(11)]
        s = sum(d[10 - (n - 1)] * (n + 1 if n <= 6 else n - 5) for n in range(1, 12))
        r = s % 11
        c = 0 if r <= 1 else 11 - r
        return "".join(map(str, d + [c]))


def phone():
    area = rng.choice(["03", "06", "045", "052", "092", "0422", "011"])
    rest = 10 - len(area)
    a = digits(rest - 4)
    b = digits(4)
    mob = "0" + rng.choice("789") + "0" + digits(8)
    forms = [
        f"{area}-{a}-{b}", f"{area}({a}){b}", f"（{area}）{a}-{b}", f"{area} - {a} - {b}", f"{area}・{a}・{b}",
        f"{area}.{a}.{b}", f"{area}〜{a}〜{b}", f"{area}{a}{b}", f"{mob[:3]}-{mob[3:7]}-{mob[7:]}", mob,
        f"+81 {mob[1:3]} {mob[3:7]} {mob[7:]}", f"{area}-{a}-{b}".translate(FW),
    ]
    return rng.choice(forms)


def email():
    local = rng.choice(["taro.yamada", "h-sato", "suzuki_k", "やまだ", "patient01", "kim+note"])
    dom = rng.choice(["example.jp", "mail.example.com", "病院.jp", "clinic.example.co.jp"])
    at = rng.choice(["@", "@", "＠"])
    return f"{local}{at}{dom}"


def ja_name():
    return rng.choice([rng.choice(FAMILY), rng.choice(FAMILY) + rng.choice(GIVEN), rng.choice(FAMILY) + " " + rng.choice(GIVEN), rng.choice(KANA)])


def en_name():
    return rng.choice([rng.choice(EN_LAST), rng.choice(EN_FIRST) + " " + rng.choice(EN_LAST)])


def ja_address():
    p, cities = rng.choice(PREF)
    c = rng.choice(cities)
    t = rng.choice(TOWN)
    block = rng.choice([f"{rng.randint(1,9)}-{rng.randint(1,30)}-{rng.randint(1,20)}", f"{rng.choice('一二三四五')}丁目{rng.randint(1,20)}番{rng.randint(1,15)}号",
                        f"{rng.randint(1,5)}丁目{rng.randint(1,20)}-{rng.randint(1,9)}"])
    return rng.choice([f"{p}{c}{t}{block}", f"{p}{c}", f"{t}{block}" if "丁目" in block or "-" in block else f"{p}{c}{t}{block}"])


rows = []
def add(kinds, text):
    rows.append((",".join(sorted(kinds)) if kinds else "-", text))

for _ in range(70):
    p = phone()
    add(["phone"], rng.choice([f"連絡先 {p} まで", f"TEL{p.replace(' ', '')}", f"TEL:{p}", f"電話{p}（自宅）", f"家族の携帯 {p} に連絡済み", f"Call back at {p} after 5pm.", f"緊急連絡先：{p}"]))
for _ in range(40):
    add(["email"], rng.choice([f"メール {email()} に結果送付", f"contact: {email()}", f"家族({email()})へ説明資料送付", f"Sent the summary to {email()} today."]))
for _ in range(35):
    n = my_number()
    form = rng.choice([n, f"{n[:4]}-{n[4:8]}-{n[8:]}", f"{n[:4]} {n[4:8]} {n[8:]}", f"{n[:3]}-{n[3:6]}-{n[6:9]}-{n[9:]}", f"{n[:4]}/{n[4:8]}/{n[8:]}", f"MN{n}", f"No{n}"])
    add(["my_number"], rng.choice([f"個人番号 {form} 確認済", f"マイナンバー：{form}", f"ID card number {form} was copied."]))
for _ in range(70):
    n = ja_name()
    add(["name"], rng.choice([f"{n}さんが外来受診", f"{n}様より電話あり", f"氏名：{n}", f"患者名 {n}", f"{n}先生に紹介", f"付き添いの{n}さんへ病状説明", f"{n}殿 御侍史"]))
for _ in range(40):
    n = en_name()
    add(["name"], rng.choice([f"Seen by Dr. {n} in clinic.", f"Mrs. {n} called about her results.", f"Mr {n} is a 67-year-old man.", f"Patient name: {n}", f"Discussed with Ms. {n}, the daughter."]))
for _ in range(45):
    a = ja_address()
    add(["address"], rng.choice([f"住所：{a}", f"{a}在住", f"自宅（{a}）で転倒", f"〒{digits(3)}-{digits(4)} {a}"]))
for _ in range(20):
    add(["address"], rng.choice([f"Lives alone at {rng.randint(1,9999)} {rng.choice(STREETS)}.", f"Home address {rng.randint(1,999)} {rng.choice(STREETS)}, Springfield"]))
for _ in range(15):
    add(["name", "phone"], f"{ja_name()}さん（{phone()}）に連絡")
for _ in range(10):
    add(["address", "name"], f"{rng.choice(FAMILY)}様 {ja_address()}")

NEG = [
    "Cr 1.23 mg/dL, BUN 18 mg/dL, eGFR 45.2 mL/min/1.73m2", "BP 120/80 mmHg, HR 88, SpO2 97%", "体温 37.5℃、血圧 132/84",
    "2024-03-05 入院、2024-03-12 退院予定", "2024/03/05 10:30 採血", "令和6年3月5日 外来", "ICD-10 I50.9 心不全", "ICD-10 E11.65, N18.3",
    "JLAC10 3C015000002327101", "JLAC10 2A990000001930951", "lot 1234-5678", "Lot AB1234567 exp 2026-01", "ロット番号 ABC123456789",
    "アムロジピン 5mg 1日1回 朝食後", "insulin glargine 12 units at bedtime", "セフトリアキソン 2g 24時間毎", "Hb 12.3 g/dL, Plt 23.4万/μL",
    "WBC 8,900 /μL, CRP 2.35 mg/dL", "HbA1c 7.2%（NGSP）", "患者さんの様子を見る", "ご家族様へ説明した", "看護師さんより報告あり",
    "殿部に発赤あり", "前回同様に経過観察", "多様な症状を呈する", "主治医先生と相談", "担当医師より説明", "お母さんが付き添い",
    "東京都在住の70代男性", "大阪府立病院より紹介", "3番目の検査項目", "第2病日より解熱", "1日3回 7日分", "0.5mg 2錠 分2",
    "ratio 0.123 456 789", "score @ 3", "a@b", "PT-INR 2.1, APTT 35.2秒", "尿蛋白 2+、尿糖 -", "K 4.1 mEq/L Na 139 mEq/L",
    "Follow up in 2 weeks.", "Take 2 tablets daily with meals.", "Dr. visit scheduled next week.", "MRI of the brain was normal.",
    "The patient's name was confirmed with the wristband.", "brand name Lasix", "病名：2型糖尿病", "薬剤名：ロキソプロフェン",
    "処方番号 20240305001", "検体番号 2403051234", "受付番号 0012345678", "ECG: sinus rhythm 72 bpm, QTc 430 ms",
    "Chest X-ray 2024.03.05 no infiltrate", "CT 5 mm slice, 120 kV", "血糖 110-130 mg/dL で推移", "体重 65.4 kg (前回 66.1 kg)",
    "ステロイド 30mg から漸減、5mg/週", "Ca 9.2, P 3.4, Mg 2.0", "LDL 142 HDL 48 TG 160", "AST 32 ALT 28 γ-GTP 45 U/L",
    "2型糖尿病、高血圧症、脂質異常症", "右下肢の浮腫 2+", "MMSE 24/30", "NYHA II 度", "Child-Pugh B (8点)", "GCS E4V5M6",
    "10:00〜12:00 リハビリ", "3月5日〜3月12日 入院", "救急外来受診 23:45", "夜間せん妄あり、ハロペリドール 2.5mg",
    "cefazolin 1 g q8h x 7 days", "Blood culture 2 sets negative", "Admitted on 03/05/2024, discharged 03/12/2024",
    "Room 1203, bed 2", "病室 503号室", "2階東病棟", "外来 3番診察室", "ベッド番号 12", "IgG 1520 mg/dL",
    "D-dimer 1.2 μg/mL", "BNP 245 pg/mL", "Troponin T 0.014 ng/mL", "PSA 4.56 ng/mL", "CEA 3.2 ng/mL, CA19-9 25 U/mL",
    "Pt is a 54 y/o F with HTN", "History of MI in 2019", "介護保険 要介護2", "身長 168.2 cm", "Version 1.2.3", "ISBN 978-4-260-12345-6", "JAN 4987123456789",
    "郵便物の確認", "住所変更の手続きを説明", "電話で家族に説明", "メールで結果を送付する予定", "Call the patient tomorrow.",
    "東京都の病院へ転院予定", "神奈川県内の施設を検討", "本人より同意取得", "ご本人様確認済み", "各位へ連絡",
    "皆さんに周知", "ヘルパーさんが訪問", "ケアマネさんと調整", "お客様相談室", "娘さんが来院",
]
for t in NEG:
    add([], t)

rng.shuffle(rows)
for k, t in rows:
    print(f"{k}\t{t}")
